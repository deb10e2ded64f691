"""Print the requirements of the core plus the given extras of pyproject.toml, one per line.

Images install only what their service needs (gateway, auth and reports never pull torch), and the
dependency layer stays cached until pyproject.toml changes. Usage: python requirements.py auth [...]
"""

import sys
import tomllib
from pathlib import Path


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


if __name__ == "__main__":
    here = Path(sys.argv[0]).resolve().parent
    path = next(p for p in (Path("pyproject.toml"), here / "pyproject.toml", here.parents[1] / "pyproject.toml") if p.is_file())
    print("\n".join(requirements(path, sys.argv[1:])))
