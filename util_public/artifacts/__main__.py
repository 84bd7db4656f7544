"""`python -m util_public.artifacts final-checkpoint|checkpoint|checkpoints RUN_DIR [EPOCH]` (see __init__)."""
from __future__ import annotations

import argparse
import sys

from ..errors import UserError, exit_on_user_error
from .manifest import RunManifest


def answer(command: str, run_dir: str, epoch: int | None = None) -> list[str]:
    """The registry names the command asks for, one per output line."""
    manifest = RunManifest.of(run_dir)
    if command == "final-checkpoint":
        return [manifest.final_checkpoint(run_dir).registry_name]
    if command == "checkpoint":
        entry = manifest.checkpoint_of_epoch(epoch)
        if entry is None or not entry.registry_name:
            raise UserError(run_dir, f"no registered checkpoint for epoch {epoch}",
                            f"epochs with checkpoints: {manifest.epochs_recorded}")
        return [entry.registry_name]
    return manifest.registry_names()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m util_public.artifacts",
                                     description="Ask a run directory's manifest for its checkpoints.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("final-checkpoint", help="registry name of a complete run's final checkpoint").add_argument("run_dir")
    one = sub.add_parser("checkpoint", help="registry name of the checkpoint of one epoch")
    one.add_argument("run_dir")
    one.add_argument("epoch", type=int)
    sub.add_parser("checkpoints", help="registry names of every recorded checkpoint, by epoch").add_argument("run_dir")
    args = parser.parse_args(argv)
    for line in answer(args.command, args.run_dir, getattr(args, "epoch", None)):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(exit_on_user_error(main))
