"""requirements.lock pins every package requirements.txt pulls in, within its ranges, and an
environment that scripts/setup.sh installed with the lock holds exactly those versions."""
from __future__ import annotations

import importlib.metadata as md
import sys
from pathlib import Path

import pytest

from util_public.paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import lock_requirements  # noqa: E402


def _pins() -> dict[str, str]:
    lines = (REPO_ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines()
    pairs = [line.split("==") for line in lines if line and not line.startswith("#")]
    return {lock_requirements._name(name): version for name, version in pairs}


def test_lock_pins_every_requirement_within_its_range():
    pins = _pins()
    for req in lock_requirements._requirements(REPO_ROOT / "requirements.txt"):
        key = lock_requirements._name(req.name)
        if key in lock_requirements.UNLOCKED:
            continue
        assert key in pins, f"{req.name} is not in requirements.lock"
        assert req.specifier.contains(pins[key], prereleases=True), f"{req.name}=={pins[key]} outside {req}"


def test_a_locked_setup_holds_exactly_the_lock():
    """In an environment scripts/setup.sh installed with the lock: the installed versions are the
    pins, and regenerating the lock here would change nothing."""
    if not list(Path(sys.prefix).glob(".mtg-setup-*-locked")):
        pytest.skip("this environment was not installed by scripts/setup.sh with requirements.lock")
    pins = _pins()
    installed = {lock_requirements._name(d.metadata["Name"]): d.version for d in md.distributions()}
    assert {n: (v, installed.get(n)) for n, v in pins.items() if installed.get(n) != v} == {}
    closure = lock_requirements.closure(lock_requirements._requirements(REPO_ROOT / "requirements.txt"))
    assert set(closure) - lock_requirements.UNLOCKED == set(pins)
