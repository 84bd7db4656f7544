"""Print evaluation results as a table (prompt type x slice) and optionally draw a bar chart.

    python evaluation/summarize.py [RESULTS_ROOT_OR_DIRS ...] [--metric accuracy] [--png chart.png]

Without arguments it reads the configured results root (MTG_RESULTS_ROOT or evaluation/test_result).
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import util_public  # noqa: E402,F401
from util_public import atomicio, packages, paths  # noqa: E402
from util_public.artifacts import none_found  # noqa: E402
from util_public.errors import UserError, exit_on_user_error  # noqa: E402
from util_public.evaluation import report  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", help="results roots, result directories or summary.json files")
    parser.add_argument("--metric", default=None, help="metric to show (default: the task's headline metric)")
    parser.add_argument("--png", default=None, help="also write a grouped bar chart to this PNG file")
    args = parser.parse_args(argv)
    if args.png:         # before any reading: the chart needs matplotlib and a writable file
        if Path(args.png).suffix.lower() != ".png":       # PNG bytes under chart.svg or out.txt
            raise UserError(f"--png {args.png}", "does not end in .png", "the chart is a PNG image: name it *.png")
        packages.require("matplotlib", "--png", "pip install matplotlib")
        atomicio.check_writable_file(args.png, "--png")
    roots = args.paths or [str(paths.root("results"))]
    summaries = report.find_summaries(roots)
    if not summaries:
        raise none_found(", ".join(roots))
    print(report.table(summaries, args.metric))
    if args.png:
        print(f"chart: {report.bar_chart(summaries, args.png, args.metric)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(exit_on_user_error(main))
