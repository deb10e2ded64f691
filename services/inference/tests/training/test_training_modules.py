"""The inference service reads recipes' tunable fields and runs' progress with the training package's
own modules, and its image carries only those (training/__init__.py, config.py, progress.py: see
deploy/docker/Dockerfile): importing the service and both launchers loads no other training module,
no torch and no yaml."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
CARRIED = {"training", "training.config", "training.progress"}


def test_the_service_needs_only_the_training_modules_its_image_carries():
    code = (
        "import sys, services.inference.server, services.inference.training.local, services.inference.training.kubernetes; "
        "loaded = {m for m in sys.modules if m == 'training' or m.startswith('training.')}; "
        f"assert loaded <= {CARRIED!r}, loaded; "
        "assert not {'torch', 'yaml'} & set(sys.modules), {'torch', 'yaml'} & set(sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}"}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env)
    for module in CARRIED:
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file() or (ROOT / module / "__init__.py").is_file()
