"""Run and checkpoint names (SPEC §5.8): derived from the config, never the clock.

`{base_tag}_{rel}_{dataset}_{text_type}_{loss}[_legacy]_bs{eff}_lr{lr}_{sched}_ep{E}_f{begin}-{last}_seed{seed}[_chat][_reh{digest}]`

(`_reh` + 8 hex digits of the `data.rehearsal` sources' sha1, when there are any.)

All ranks of a multi-process launch derive the same name. A long base tag is shortened to its
first 48 characters + "-h" + 8 hex digits of its sha1 (no collisions, unlike the original's
fixed abbreviations), and further when the run name would exceed 180 characters, so that
`{run_name}_checkpoint-{step}` registry names stay within 200. Names use only
[A-Za-z0-9._+-]: a printed name pastes into a Hydra override (`model.name=...`) unquoted.
"""
from __future__ import annotations

import hashlib
import json
import re

from ..errors import UserError

MAX_RUN_NAME = 180
MAX_BASE_TAG = 60          # longer base tags become 48 characters + "-h" + 8 hex digits
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


def sanitize(text: str) -> str:
    """`&` becomes `and`; anything outside [A-Za-z0-9._+-] becomes `-`; no `..` (path safety)."""
    return re.sub(r"\.{2,}", ".", _UNSAFE.sub("-", str(text).replace("&", "and")))


def shorten(tag: str, prefix: int) -> str:
    """The first `prefix` characters + "-h" + the first 8 hex digits of the whole tag's sha1."""
    digest = hashlib.sha1(tag.encode("utf-8")).hexdigest()[:8]
    return f"{tag[:max(prefix, 1)]}-h{digest}"


def lr_text(lr: float) -> str:
    return f"{float(lr):g}"


def run_name(base_name: str, relation_id: str, dataset: str, text_type: str, loss_mode: str, legacy: bool,
             effective_batch: int, lr: float, scheduler: str, epochs: int, first_fact: int, last_fact: int,
             seed: int, chat: bool, rehearsal: list[dict] | None = None) -> str:
    rest = (f"_{relation_id}_{dataset}_{text_type}_{loss_mode}{'_legacy' if legacy else ''}"
            f"_bs{effective_batch}_lr{lr_text(lr)}_{scheduler}_ep{epochs}_f{first_fact}-{last_fact}"
            f"_seed{seed}{'_chat' if chat else ''}{rehearsal_tag(rehearsal or [])}")
    rest = sanitize(rest)
    base = sanitize(base_name)
    tag = base if len(base) <= MAX_BASE_TAG else shorten(base, 48)
    room = MAX_RUN_NAME - len(rest)
    if room < 10:
        raise UserError("save.run_name", f"the derived run name part {rest!r} is too long",
                        "set save.run_name to a shorter explicit name")
    if len(tag) > room:
        tag = shorten(base, room - 10)
    return tag + rest


def rehearsal_tag(sources: list[dict]) -> str:
    """"" without rehearsal sources, else "_reh" + 8 hex digits of their sha1."""
    if not sources:
        return ""
    return "_reh" + hashlib.sha1(json.dumps(sources, sort_keys=True).encode("utf-8")).hexdigest()[:8]


def explicit(name: str) -> str:
    """`save.run_name` as given, or refused: rewriting it would hide the run where nobody looks
    (`../escape` became the hidden folder `.-escape`)."""
    if not name or len(name) > MAX_RUN_NAME or name in (".", "..") or sanitize(name) != name:
        raise UserError("save.run_name", f"{name!r} is not a run name",
                        f"use 1..{MAX_RUN_NAME} characters from [A-Za-z0-9._+-], without '..'")
    return name


def checkpoint_name(run: str, step: int) -> str:
    return f"{run}_checkpoint-{step}"
