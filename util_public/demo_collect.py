"""One comparison table from several demo runs (seeds, settings, models): `docs/RESULTS.md`'s tables.

    python -m util_public.demo_collect runs/demo-full-s*/results.json [--mean]

Each `results.json` (written by `util_public.demo`) becomes one line: the Phase-1 key accuracy and,
on unseen facts, the train-prompt and mean test-paraphrase accuracy of Phase 1 only, Phase 1 +
Phase 2 and Phase 2 only, each with its binomial standard error sqrt(p(1-p)/n), n = unseen facts
(times the relations trained jointly). `--mean` adds the mean over the lines with the standard
deviation across them. Lines are labelled by their folder name; the last column says where and in
which formats each ran (the numbers depend on both: docs/RESULTS.md §4).
"""
from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

from . import relspec, runinfo, textio
from .errors import UserError, exit_on_user_error

# (heading, table row, column of util_public.demo.COLUMNS)
CELLS = (
    ("key acc", "phase 1", "key acc (all)"),
    ("P1: train", "phase 1", "train acc (unseen)"),
    ("P1: test", "phase 1", "test acc (unseen)"),
    ("P1+P2: train", "phase 1 + phase 2", "train acc (unseen)"),
    ("P1+P2: test", "phase 1 + phase 2", "test acc (unseen)"),
    ("P2 only: train", "phase 2 only", "train acc (unseen)"),
    ("P2 only: test", "phase 2 only", "test acc (unseen)"),
    ("P1+P2: unrelated gold prob", "phase 1 + phase 2", "unrelated gold_prob_raw (unseen)"),
)


def load(path: Path) -> dict:
    try:
        result = textio.read_json(path)
        rows, relation_id = result["rows"], result["config"]["relation_id"]
        n_unseen = rows["phase 1"]["n_unseen"]
        for _, row, column in CELLS:        # every cell the table reads
            if column not in rows[row]:
                raise KeyError(f"{row}: {column}")
    except (KeyError, TypeError) as exc:     # a row or key missing, or a value of another type
        raise UserError(str(path), f"not a demo results.json (no {exc})" if isinstance(exc, KeyError)
                        else f"not a demo results.json ({exc})", "pass files written by util_public.demo") from None
    relations = len(relspec.separate(relation_id, f"{path}: config.relation_id"))
    where = "not recorded"          # results.json written before the machine was recorded
    if "machine" in result:
        where = f"{runinfo.describe_machine(result['machine'])}; {result.get('formats', 'formats not recorded')}"
    return {"label": path.parent.name, "rows": rows, "n": n_unseen * relations,
            "minutes": round(sum(result.get("timings_s", {}).values()) / 60, 1), "where": where}


def cell(value, n: int, heading: str) -> str:
    if value is None:
        return "n/a"
    if "prob" in heading:
        return f"{value:.3g}"
    if heading == "key acc":
        return f"{value:.2f}"
    return f"{value:.2f} ± {math.sqrt(value * (1 - value) / n):.2f}"


def table(runs: list[dict], mean: bool) -> str:
    head = ["run", "n unseen", *[c[0] for c in CELLS], "stages (min)", "machine; formats"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in runs:
        values = [cell(run["rows"][row][column], run["n"], heading) for heading, row, column in CELLS]
        lines.append(f"| {run['label']} | {run['n']} | " + " | ".join(values) + f" | {run['minutes']} | {run['where']} |")
    if mean and len(runs) > 1:
        values = []
        for heading, row, column in CELLS:
            xs = [r["rows"][row][column] for r in runs if r["rows"][row][column] is not None]
            sd = f"{statistics.stdev(xs):.2f}" if len(xs) > 1 else "n/a"     # one run with a value: no spread
            values.append("n/a" if not xs else f"{statistics.mean(xs):.3g}" if "prob" in heading
                          else f"{statistics.mean(xs):.2f} (sd {sd})")
        lines.append(f"| mean of {len(runs)} | {runs[0]['n']} | " + " | ".join(values) + " | | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="demo results.json files")
    parser.add_argument("--mean", action="store_true", help="add the mean (and sd) over the runs")
    args = parser.parse_args(argv)
    print(table([load(p) for p in args.results], args.mean), end="")
    return 0


if __name__ == "__main__":
    exit_on_user_error(main)
