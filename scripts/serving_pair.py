"""The serving pair as pyproject.toml pins it: the training torch and the Triton release that reads its
model.pt files. One reader for the Makefile, scripts/images.sh and the tests.

    python3 scripts/serving_pair.py torch-pins    # "torch==X torchvision==Y" (the training extra)
    python3 scripts/serving_pair.py triton        # the Triton release, e.g. 26.08
"""
import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def load(path: Path = PYPROJECT) -> dict:
    """{"torch": "2.14.1", "torchvision": "0.29.1", "triton_release": "26.08", "triton_libtorch": "2.14"}."""
    project = tomllib.loads(path.read_text())
    pins = {}
    for requirement in project["project"]["optional-dependencies"]["training"]:
        match = re.fullmatch(r"(torch|torchvision)==([\w.]+)", requirement)
        if match:
            pins[match[1]] = match[2]
    serving = project["tool"]["fer-platform"]["serving"]
    return {**pins, "triton_release": serving["triton-release"], "triton_libtorch": serving["triton-libtorch"]}


def main(argv: list[str]) -> int:
    pair = load()
    if argv == ["torch-pins"]:
        print(f"torch=={pair['torch']} torchvision=={pair['torchvision']}")
    elif argv == ["triton"]:
        print(pair["triton_release"])
    else:
        print("usage: serving_pair.py torch-pins|triton", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
