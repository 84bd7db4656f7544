"""Write `requirements.lock`: the exact versions installed here of everything `requirements.txt` pulls in.

    .venv/bin/python scripts/lock_requirements.py          # after the test suite passed in this .venv

The closure follows each installed distribution's declared dependencies (extras only where a
requirement names them, environment markers evaluated for this interpreter). torch is left out:
`scripts/setup.sh` installs it first, as `MTG_TORCH_SPEC` says (the CPU wheel by default), and so are
the environment's own packaging tools.
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import platform
import re
import sys
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
UNLOCKED = {"torch", "pip", "setuptools", "wheel"}    # torch: MTG_TORCH_SPEC; the rest: the venv's own tools


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def _requirements(path: Path) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [Requirement(line) for line in lines if line]


def closure(roots: list[Requirement]) -> dict[str, str]:
    """{distribution name: installed version} of `roots` and everything they depend on."""
    found: dict[str, str] = {}
    todo = [(r, frozenset(r.extras)) for r in roots]
    while todo:
        req, extras = todo.pop()
        key = _name(req.name)
        if key in found:
            continue
        dist = md.distribution(req.name)
        found[key] = f"{dist.metadata['Name']}=={dist.version}"
        for dep in (Requirement(d) for d in dist.requires or []):
            markers = [{"extra": e} for e in extras] or [{"extra": ""}]
            if dep.marker is None or any(dep.marker.evaluate(m) for m in markers):
                todo.append((dep, frozenset(dep.extras)))
    return found


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    pinned = closure(_requirements(ROOT / "requirements.txt"))
    lines = [f"# Exact versions the test suite ran on (Python {platform.python_version()}, CPU torch from "
             "scripts/setup.sh), as constraints",
             "# on requirements.txt. Regenerate: .venv/bin/python scripts/lock_requirements.py",
             *sorted(v for k, v in pinned.items() if k not in UNLOCKED)]
    out = ROOT / "requirements.lock"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
