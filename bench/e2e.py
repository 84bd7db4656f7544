"""End-to-end wall times on this machine: the main demo (`bash scripts/demo.sh`, Qwen), its quick
variant (`bash scripts/demo.sh quick`, SmolLM2) and the whole test suite (`bash scripts/test.sh`),
each run once, one after the other.

A benchmark, not a test: run it when nothing else runs (the load average before and after each
command is recorded, since contention inflates every figure). Each demo runs cold, into a fresh
output folder (deleted afterwards; its table is kept in the record), so nothing cached is reused;
the model conversion in `.model_cache/` is kept, as on any second run. Output of the commands goes
to a log beside the JSON record. Example: `.venv/bin/python bench/e2e.py` (add `--only tests`).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import common

COMMANDS = {"demo": ["bash", "scripts/demo.sh"], "demo_quick": ["bash", "scripts/demo.sh", "quick"],
            "tests": ["bash", "scripts/test.sh", "-q"]}
TARGET_S = {"demo": 600, "demo_quick": 300, "tests": 600}   # the CPU targets (issues 5 and 6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(COMMANDS), action="append", help="run only these (repeatable)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_path = Path(args.out).with_suffix(".log") if args.out else common.RESULTS / f"e2e-{stamp}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    info = common.machine("cpu")
    print(common.describe(info))
    rows = []
    with open(log_path, "w") as log:
        for name in args.only or list(COMMANDS):
            command, scratch = list(COMMANDS[name]), None
            if name.startswith("demo"):
                scratch = Path(tempfile.mkdtemp(prefix=f"e2e-{name}-", dir=common.RESULTS))
                command.append(f"out_dir={scratch}")
            load_before = os.getloadavg()[0]
            started = time.perf_counter()
            rc = subprocess.run(command, cwd=common.RESULTS.parents[1], stdout=log, stderr=subprocess.STDOUT).returncode
            seconds = time.perf_counter() - started
            table = ""
            if scratch is not None:
                table = (scratch / "table.md").read_text() if (scratch / "table.md").is_file() else ""
                shutil.rmtree(scratch, ignore_errors=True)
            rows.append({"what": name, "command": " ".join(COMMANDS[name]), "exit": rc, "seconds": round(seconds, 1),
                         "table": table,
                         "target_s": TARGET_S[name], "met": rc == 0 and seconds <= TARGET_S[name],
                         "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)})
            print(f"  {name}: {seconds:.1f} s, exit {rc}", flush=True)
    print(common.table(rows, ["what", "command", "exit", "seconds", "target_s", "met", "load_before", "load_after"]))
    print(f"log: {log_path}")
    common.write_record("e2e", {"bench": "e2e", "machine": info, "rows": rows, "log": str(log_path)}, args.out)


if __name__ == "__main__":
    main()
