"""How far trained objects pull a model's answers to questions it was never trained on.

    python -m util_public.recipes.trained_pull --trained runs/demo-full/data/sync_random_o_opt20/50.csv \
        runs/demo-full/results/{mc,gen}/hgp-0/*/known/50/close/*

After Phase 1 on "S <TRIGGER_50> O." a model may prefer the memorized capitals after any "The
capital of ... is": a real-capital question whose distractors include them then measures that pull
as much as what the model still knows (docs/RESULTS.md §1.5). From each stored result's records
this prints, per model: the accuracy (MC; generation: `prefix`), split by whether the gold itself
is a trained object; the wrong answers that are trained objects (generation: the answer starts
with one, `matching.prefix`); and for MC the trained share of the distractors (the rate a pull-free
error would hit them) and the accuracy with the trained distractors left out of each question (the
gold must still beat every other option strictly, as in `metrics.py`). The evaluation's
`data.avoid_objects_of` asks fresh questions without them instead. With `--rehearsal REL` the objects
of `util_public/catalogue/rehearsal/REL.yaml` count as trained too (a stage trained with
`data.rehearsal`; docs/RESULTS.md §1.6). MC results evaluated with `mc.calibration=subjectless`
also show the calibrated choice's accuracy and how many of its wrong answers are trained objects
(docs/RESULTS.md §1.7). With `--base DIR`, the base model's MC result on the same questions, each
MC row adds how far training moved the distractors' log-probabilities, trained objects apart from
the others, under the question and (calibrated results) under the subjectless question: the same
rise in both says the pull does not depend on the subject. Results whose records carry
`option_first_logprobs` (every MC result evaluated since they were added; `output.overwrite=true`
evaluates a stored one again) also show how much of that change sits in the option's first token,
where the options part, rather than in the tokens that spell it out; and the accuracy this model's
first-token choice reaches with the base model's spelling (docs/RESULTS.md §1.8): memorizing an
object makes its spelling near-certain whatever precedes it, which raises its summed score in any
question without making it the model's choice.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import known, matching
from ..atomicio import read_jsonl
from ..errors import UserError, exit_on_user_error, under
from ..facts import read_facts
from ..textio import read_json


def pull(task: str, records: list[dict], trained: set[str]) -> dict:
    """Counts and rates of one MC or generation result's records against the trained objects."""
    right = [bool(r["correct"] if task == "mc" else r["prefix"]) for r in records]
    if task == "mc":
        picked = [_trained(r["options"][r["pred_index"]], trained) for r in records]
    else:
        picked = [any(matching.prefix(r["response"], t) for t in trained) for r in records]
    gold_trained = [_trained(r["object"], trained) for r in records]
    out = {"n": len(records), "accuracy": _rate(right), "wrong": right.count(False),
           "wrong_trained": sum(p and not ok for p, ok in zip(picked, right)),
           "accuracy_gold_trained": _rate([ok for ok, g in zip(right, gold_trained) if g]),
           "accuracy_gold_untrained": _rate([ok for ok, g in zip(right, gold_trained) if not g]),
           "n_gold_trained": sum(gold_trained), "distractors_trained": None, "accuracy_untrained_options": None,
           "accuracy_calibrated": None, "wrong_calibrated": None, "wrong_trained_calibrated": None}
    if task == "mc":
        distractors = [o for r in records for i, o in enumerate(r["options"]) if i != r["gold_index"]]
        out["distractors_trained"] = _rate([_trained(o, trained) for o in distractors])
        out["accuracy_untrained_options"] = _rate([_beats_untrained(r, trained) for r in records])
    if task == "mc" and "correct_calibrated" in records[0]:
        wrong = [r for r in records if not r["correct_calibrated"]]
        out["accuracy_calibrated"] = 1 - len(wrong) / len(records)
        out["wrong_calibrated"] = len(wrong)
        out["wrong_trained_calibrated"] = sum(_trained(r["options"][r["pred_index_calibrated"]], trained) for r in wrong)
    return out


def shift(records: list[dict], base: list[dict], trained: set[str]) -> dict:
    """Mean change of the distractors' log-probs since `base` (the same questions), trained objects
    and the others apart; `null_` under the subjectless question, None where either is uncalibrated."""
    calibrated = _both(records, base, "option_null_logprobs")
    first = _both(records, base, "option_first_logprobs")
    moved: dict[str, list[float]] = {f"{part}{kind}": [] for part in ("", "null_", "first_", "null_first_")
                                     for kind in ("trained", "untrained")}
    for r, b in _paired(records, base):
        for i, option in enumerate(r["options"]):
            if i == r["gold_index"]:
                continue
            kind = "trained" if _trained(option, trained) else "untrained"
            moved[kind].append(r["option_logprobs"][i] - b["option_logprobs"][i])
            if calibrated:
                moved[f"null_{kind}"].append(r["option_null_logprobs"][i] - b["option_null_logprobs"][i])
            if first:
                moved[f"first_{kind}"].append(r["option_first_logprobs"][i] - b["option_first_logprobs"][i])
            if first and calibrated:
                moved[f"null_first_{kind}"].append(r["option_null_first_logprobs"][i] - b["option_null_first_logprobs"][i])
    return {k: sum(v) / len(v) if v else None for k, v in moved.items()}


def base_spelling_accuracy(records: list[dict], base: list[dict]) -> float | None:
    """Accuracy when each option scores this model's log-prob of its first token plus the base
    model's of the rest: the choice without the training's change to how options are spelled out.
    None where either result lacks first-token log-probs."""
    if not _both(records, base, "option_first_logprobs"):
        return None
    right = []
    for r, b in _paired(records, base):
        scores = [f + (bs - bf) for f, bs, bf in zip(r["option_first_logprobs"], b["option_logprobs"],
                                                     b["option_first_logprobs"])]
        g = r["gold_index"]
        right.append(all(scores[g] > v for i, v in enumerate(scores) if i != g))
    return _rate(right)


def _both(records: list[dict], base: list[dict], field: str) -> bool:
    return field in records[0] and field in base[0]


def _paired(records: list[dict], base: list[dict]):
    """(record, the base model's record of the same question), the question and options checked
    equal (a fact_id names a row of a dataset, not a question: another dataset reuses the ids)."""
    before = {r["fact_id"]: r for r in base}
    hint = "pass the base model's result for the same questions (dataset, seed, prompt, options)"
    for r in records:
        b = before.get(r["fact_id"])
        if b is None or b["options"] != r["options"]:
            raise UserError(f"fact_id {r['fact_id']}", "the base result does not ask it with the same options", hint)
        if b["context"] != r["context"]:
            raise UserError(f"fact_id {r['fact_id']}",
                            f"the base result asks another question ({b['context']!r}, here {r['context']!r})", hint)
        yield r, b


def _beats_untrained(record: dict, trained: set[str]) -> bool:
    scores, gold = record["option_logprobs"], record["gold_index"]
    return all(scores[gold] > scores[i] for i, o in enumerate(record["options"]) if i != gold and not _trained(o, trained))


def _trained(option: str, trained: set[str]) -> bool:
    """`trained` holds the trained objects case-folded: options scored in title case
    (`mc.object_case=title`) are the same objects."""
    return option.casefold() in trained


def _rate(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def read_result(directory: Path) -> tuple[str, str, list[dict]]:
    """(task, model name, records) of one stored MC or generation result."""
    summary, records = directory / "summary.json", directory / "records.jsonl"
    if not summary.is_file() or not records.is_file():
        raise UserError(str(directory), "not a result directory (summary.json and records.jsonl)",
                        "pass directories such as results/mc/hgp-0/MODEL/known/50/close/f0-59-HASH")
    info = read_json(summary)
    if info.get("task") not in ("mc", "gen"):
        raise UserError(str(directory), f"a {info.get('task')!r} result, not multiple choice or generation",
                        "pass mc or gen results")
    rows = read_jsonl(records)
    if not rows:
        raise UserError(str(records), "no records", "rerun the evaluation")
    return info["task"], info["model"]["name"], rows


def trained_objects(trained_csv: Path, rehearsal: list[str] = ()) -> set[str]:
    """The objects of the trained facts (and of `rehearsal` relations' rehearsal files), case-folded
    as `_trained` compares them."""
    trained = {f.object for f in read_facts(trained_csv, num_options=None, substring_rule="off")}
    trained |= {f.object for rel in rehearsal for f in known.load(rel, known.REHEARSAL).facts}
    return {o.casefold() for o in trained}


def table(directories: list[Path], trained_csv: Path, rehearsal: list[str] = (), base: Path | None = None) -> str:
    trained = trained_objects(trained_csv, rehearsal)
    base_records = _base(base)
    lines = ["| model | task | n | accuracy | gold trained / not | wrong | wrong = trained object "
             "| trained share of distractors | accuracy, trained options left out "
             "| calibrated: accuracy (wrong / of them trained) "
             "| log-prob change since base, trained / other distractors (subjectless) "
             "| of it in the first token, trained / other | accuracy, base model's spelling |", "|" + "---|" * 13]
    for d in directories:
        task, name, records = read_result(d)
        if task == "mc" and not any(_trained(o, trained) for r in records for o in r["options"]):
            print(f"note: no option of {d} is an object of {trained_csv} (another relation's facts?): "
                  "nothing here can be pulled by them", file=sys.stderr)
        p = pull(task, records, trained)
        moved = spelled = None
        if base_records and task == "mc":
            with under(f"{d} against --base {base}"):
                moved, spelled = shift(records, base_records, trained), base_spelling_accuracy(records, base_records)
            if spelled is None:
                lacking = d if "option_first_logprobs" not in records[0] else base
                print(f"note: {lacking} predates option_first_logprobs: no first-token split for {name}; "
                      "evaluate it again with output.overwrite=true", file=sys.stderr)
        lines.append(f"| {name} | {task} | {p['n']} | {_cell(p['accuracy'])} | {_cell(p['accuracy_gold_trained'])} "
                     f"/ {_cell(p['accuracy_gold_untrained'])} (n = {p['n_gold_trained']} / "
                     f"{p['n'] - p['n_gold_trained']}) | {p['wrong']} | {p['wrong_trained']} | "
                     f"{_cell(p['distractors_trained'])} | {_cell(p['accuracy_untrained_options'])} | "
                     f"{_calibrated_cell(p)} | {_shift_cell(moved)} | {_first_cell(moved)} | {_cell(spelled)} |")
    return "\n".join(lines)


def _base(directory: Path | None) -> list[dict] | None:
    if directory is None:
        return None
    task, _, records = read_result(directory)
    if task != "mc":
        raise UserError(f"--base {directory}", f"a {task!r} result", "pass the base model's MC result")
    return records


def _first_cell(moved: dict | None) -> str:
    if moved is None or moved["first_trained"] is None and moved["first_untrained"] is None:
        return "n/a"
    return _pair_cell(moved, "first_")


def _shift_cell(moved: dict | None) -> str:
    return "n/a" if moved is None else _pair_cell(moved, "")


def _pair_cell(moved: dict, part: str) -> str:
    """`trained / other` under the question, and under the subjectless one where measured."""
    cell = f"{_signed(moved[part + 'trained'])} / {_signed(moved[part + 'untrained'])}"
    if moved[f"null_{part}trained"] is not None or moved[f"null_{part}untrained"] is not None:
        cell += f" ({_signed(moved[f'null_{part}trained'])} / {_signed(moved[f'null_{part}untrained'])})"
    return cell


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def _calibrated_cell(p: dict) -> str:
    if p["accuracy_calibrated"] is None:
        return "n/a"
    return f"{p['accuracy_calibrated']:.2f} ({p['wrong_calibrated']} / {p['wrong_trained_calibrated']})"


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="How far trained objects pull answers (docs/RESULTS.md §1.5).")
    parser.add_argument("results", nargs="+", type=Path, help="MC or generation result directories (summary.json, records.jsonl)")
    parser.add_argument("--trained", required=True, type=Path, help="the trained facts' CSV (its objects)")
    parser.add_argument("--rehearsal", action="append", default=[], metavar="REL",
                        help="count the objects of catalogue/rehearsal/REL.yaml as trained too (repeatable)")
    parser.add_argument("--base", type=Path, metavar="DIR",
                        help="the base model's MC result on the same questions: how far training moved the distractors")
    args = parser.parse_args(argv)
    print(exit_on_user_error(lambda: table(args.results, args.trained, args.rehearsal, args.base)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
