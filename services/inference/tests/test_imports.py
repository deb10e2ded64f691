"""The inference service's image carries no torch: it talks to Triton, and ferkit.vision is NumPy/Pillow."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_the_inference_service_never_imports_torch():
    code = (
        "import sys, services.inference.server, ferkit.images; "
        "loaded = {'torch', 'torchvision'} & set(sys.modules); assert not loaded, loaded"
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}"}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env)
