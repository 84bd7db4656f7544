"""`recipes/trained_pull`: which wrong answers are trained objects, from stored MC and generation records."""
import json

import pytest

from util_public.errors import UserError
from util_public.facts import Fact, write_facts
from util_public.recipes import trained_pull

TRAINED = {"oslo", "lima"}


def record(options, scores, gold):
    pred = max(range(len(options)), key=lambda i: (scores[i], i != gold))    # a tie goes to the other option
    return {"context": "The capital of Vrania is", "options": options, "option_logprobs": scores, "gold_index": gold,
            "pred_index": pred,
            "correct": pred == gold and scores.count(scores[gold]) == 1, "object": options[gold]}


RECORDS = [
    record(["oslo", "rome", "paris"], [-1.0, -5.0, -2.0], 2),     # wrong, to a trained object; right without it
    record(["rome", "lima", "paris"], [-1.0, -3.0, -2.0], 2),     # wrong, to an untrained object
    record(["oslo", "rome", "paris"], [-3.0, -4.0, -1.0], 2),     # right
    record(["rome", "lima", "paris"], [-1.0, -2.0, -1.0], 2),     # a tie with rome: wrong with or without lima
    record(["rome", "paris", "lima"], [-3.0, -2.0, -1.0], 2),     # right, and the gold is a trained object
]
GEN = [{"object": "paris", "response": " Oslo. The capital of", "prefix": False},    # a trained object, any case
       {"object": "paris", "response": " oslofjord", "prefix": False},             # not a whole-word start
       {"object": "lima", "response": " lima.", "prefix": True}]


def test_pull_counts_trained_errors_and_rescores_without_them():
    p = trained_pull.pull("mc", RECORDS, TRAINED)
    assert (p["n"], p["wrong"], p["wrong_trained"], p["n_gold_trained"]) == (5, 3, 1, 1)
    assert (p["accuracy"], p["accuracy_gold_trained"], p["accuracy_gold_untrained"]) == pytest.approx((2 / 5, 1, 1 / 4))
    assert p["distractors_trained"] == pytest.approx(4 / 10)
    assert p["accuracy_untrained_options"] == pytest.approx(3 / 5)


def test_generation_errors_that_start_with_a_trained_object():
    p = trained_pull.pull("gen", GEN, TRAINED)
    assert (p["n"], p["accuracy"], p["wrong"], p["wrong_trained"]) == (3, pytest.approx(1 / 3), 2, 1)
    assert p["distractors_trained"] is None and p["accuracy_untrained_options"] is None


def write_result(directory, task="mc", records=RECORDS):
    directory.mkdir(parents=True)
    (directory / "summary.json").write_text(json.dumps({"task": task, "model": {"name": "m1"}}))
    (directory / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return directory


def test_cli_prints_one_row_per_result(tmp_path, capsys):
    csv = write_facts(tmp_path / "50.csv", [Fact(i, "50", f"S{i}", o, []) for i, o in enumerate(sorted(TRAINED))])
    result = write_result(tmp_path / "r1")
    assert trained_pull.main(["--trained", str(csv), str(result)]) == 0
    out = capsys.readouterr()
    assert "| m1 | mc | 5 | 0.40 | 1.00 / 0.25 (n = 1 / 4) | 3 | 1 | 0.40 | 0.60 | n/a | n/a |" in out.out
    assert "note" not in out.err


def test_a_trained_file_whose_objects_are_never_options_is_noted(tmp_path, capsys):
    """Another relation's trained facts gave a table of zeros without a word."""
    csv = write_facts(tmp_path / "71.csv", [Fact(0, "71", "Book", "writer", [])])
    result = write_result(tmp_path / "r1")
    assert trained_pull.main(["--trained", str(csv), str(result)]) == 0
    assert f"note: no option of {result} is an object of {csv}" in capsys.readouterr().err


def calibrated(rec, null):
    """`rec` with the fields of mc.calibration=subjectless for these subjectless scores."""
    diff = [s - n for s, n in zip(rec["option_logprobs"], null)]
    pred = record(rec["options"], diff, rec["gold_index"])
    return {**rec, "option_null_logprobs": null, "pred_index_calibrated": pred["pred_index"],
            "correct_calibrated": pred["correct"]}


def test_calibrated_choices_are_counted_apart(tmp_path, capsys):
    """oslo's lead over paris is a prior (it leads the subjectless question too): calibrated, paris wins."""
    recs = [calibrated(RECORDS[0], [-0.5, -5.0, -3.0]),                  # right once calibrated
            calibrated(RECORDS[1], [-2.0, -1.0, -3.0]),                   # still wrong, to an untrained object
            calibrated(RECORDS[2], [-5.0, -4.0, 0.0])]                     # now wrong, to a trained object
    p = trained_pull.pull("mc", recs, TRAINED)
    assert (p["accuracy_calibrated"], p["wrong_calibrated"], p["wrong_trained_calibrated"]) == (pytest.approx(1 / 3), 2, 1)
    assert (p["accuracy"], p["wrong_trained"]) == (pytest.approx(1 / 3), 1)       # the plain choice as before
    csv = write_facts(tmp_path / "50.csv", [Fact(i, "50", f"S{i}", o, []) for i, o in enumerate(sorted(TRAINED))])
    assert trained_pull.main(["--trained", str(csv), str(write_result(tmp_path / "r1", records=recs))]) == 0
    assert "| 0.33 (2 / 1) |" in capsys.readouterr().out


def test_rehearsal_objects_count_as_trained_when_asked(tmp_path, capsys):
    """A wrong answer naming a rehearsed capital (london, rehearsal/50.yaml) is a trained object only with --rehearsal."""
    csv = write_facts(tmp_path / "50.csv", [Fact(0, "50", "S0", "oslo", [])])
    result = write_result(tmp_path / "r1", records=[record(["london", "rome", "paris"], [-1.0, -5.0, -2.0], 2)])
    for extra, cell in (([], "| 1 | 0 |"), (["--rehearsal", "50"], "| 1 | 1 |")):
        assert trained_pull.main(["--trained", str(csv), *extra, str(result)]) == 0
        assert cell in capsys.readouterr().out


@pytest.mark.parametrize("make,needle", [
    (lambda d: d.mkdir(), "not a result directory"),
    (lambda d: write_result(d, task="ppl"), "not multiple choice or generation"),
    (lambda d: write_result(d, records=[]), "no records"),
])
def test_bad_result_directories_are_named(tmp_path, make, needle):
    make(tmp_path / "r1")
    with pytest.raises(UserError) as err:
        trained_pull.read_result(tmp_path / "r1")
    assert needle in err.value.message and "r1" in err.value.message


def test_the_shift_since_the_base_model_splits_trained_and_other_distractors(tmp_path, capsys):
    base = [{**calibrated(r, [-2.0, -2.0, -2.0]), "fact_id": i} for i, r in enumerate(RECORDS[:2])]
    after = [{**b, "option_logprobs": [s + (4.0 if o in TRAINED else 1.0) for s, o in zip(b["option_logprobs"], b["options"])],
              "option_null_logprobs": [-2.0 + (5.0 if o in TRAINED else 0.5) for o in b["options"]]} for b in base]
    moved = trained_pull.shift(after, base, TRAINED)
    assert moved == {"trained": 4.0, "untrained": 1.0, "null_trained": 5.0, "null_untrained": 0.5, "first_trained": None,
                     "first_untrained": None, "null_first_trained": None, "null_first_untrained": None}   # no first tokens
    assert trained_pull.shift(RECORDS_WITH_IDS, RECORDS_WITH_IDS, TRAINED)["null_trained"] is None   # uncalibrated
    csv = write_facts(tmp_path / "50.csv", [Fact(i, "50", f"S{i}", o, []) for i, o in enumerate(sorted(TRAINED))])
    args = ["--trained", str(csv), "--base", str(write_result(tmp_path / "base", records=base))]
    assert trained_pull.main([*args, str(write_result(tmp_path / "after", records=after))]) == 0
    out = capsys.readouterr()
    assert "| +4.00 / +1.00 (+5.00 / +0.50) | n/a | n/a |" in out.out
    assert f"{tmp_path / 'after'} predates option_first_logprobs" in out.err and "output.overwrite=true" in out.err


# A result that does not ask the base result's questions -> what the refusal says.
NOT_THE_BASE_QUESTIONS = {
    "other options": ({"options": ["rome", "oslo", "paris"]}, "same options"),
    # another dataset reuses the fact ids and its options may coincide: the question tells them apart
    "another subject": ({"context": "The capital of Stordistan is"},
                        "asks another question ('The capital of Vrania is', here 'The capital of Stordistan is')"),
}


@pytest.mark.parametrize("change", list(NOT_THE_BASE_QUESTIONS))
def test_a_base_result_of_other_questions_is_refused(tmp_path, change):
    edit, says = NOT_THE_BASE_QUESTIONS[change]
    base = [{**r, "fact_id": i} for i, r in enumerate(RECORDS[:2])]
    csv = write_facts(tmp_path / "50.csv", [Fact(i, "50", f"S{i}", o, []) for i, o in enumerate(sorted(TRAINED))])
    write_result(tmp_path / "base", records=base)
    mismatch = write_result(tmp_path / "other", records=[{**base[0], **edit}, base[1]])
    with pytest.raises(UserError) as err:
        trained_pull.table([mismatch], csv, base=tmp_path / "base")
    assert all(n in err.value.message for n in (str(mismatch), "--base", "fact_id 0", says)), err.value.message


RECORDS_WITH_IDS = [{**r, "fact_id": i} for i, r in enumerate(RECORDS)]


def scored(options, gold, first, rest, null_first=None, null_rest=None, fact_id=0):
    """An MC record from per-option first-token and spelling (the other tokens) log-probs."""
    rec = {**record(options, [f + r for f, r in zip(first, rest)], gold), "fact_id": fact_id, "option_first_logprobs": first}
    if null_first is not None:
        rec = {**calibrated(rec, [f + r for f, r in zip(null_first, null_rest)]), "option_null_first_logprobs": null_first}
    return rec


def test_the_shift_splits_into_the_first_token_and_the_spelling(tmp_path, capsys):
    """Training made oslo's spelling certain (rest -> 0) in both questions; in the second it also
    made oslo's first token the likelier choice. Summed, both questions are lost to oslo; with the
    base model's spelling only the second, whose first-token choice did change."""
    base = [scored(["oslo", "rome", "paris"], 2, [-2.0, -3.0, -1.5], [-3.0, -2.0, -0.5], [-3.0] * 3, [-3.0] * 3),
            scored(["rome", "oslo", "paris"], 2, [-2.0, -5.0, -1.5], [-2.0, -1.0, -1.5], [-3.0] * 3, [-3.0] * 3, 1)]
    after = [scored(["oslo", "rome", "paris"], 2, [-1.8, -3.0, -1.5], [0.0, -2.0, -0.5], [-1.0, -3.0, -3.0], [0.0, -3.0, -3.0]),
             scored(["rome", "oslo", "paris"], 2, [-2.0, -0.5, -1.5], [-2.0, 0.0, -1.5], [-3.0, -1.0, -3.0], [-3.0, 0.0, -3.0], 1)]
    assert [r["correct"] for r in after] == [False, False] and [r["correct"] for r in base] == [True, True]
    moved = trained_pull.shift(after, base, TRAINED)
    assert moved == pytest.approx({"trained": 4.35, "untrained": 0.0, "null_trained": 5.0, "null_untrained": 0.0,
                                   "first_trained": 2.35, "first_untrained": 0.0, "null_first_trained": 2.0,
                                   "null_first_untrained": 0.0})
    assert trained_pull.base_spelling_accuracy(after, base) == 0.5
    assert trained_pull.base_spelling_accuracy(base, base) == 1.0
    assert trained_pull.base_spelling_accuracy(RECORDS_WITH_IDS, RECORDS_WITH_IDS) is None    # no first tokens stored
    csv = write_facts(tmp_path / "50.csv", [Fact(i, "50", f"S{i}", o, []) for i, o in enumerate(sorted(TRAINED))])
    args = ["--trained", str(csv), "--base", str(write_result(tmp_path / "base", records=base))]
    assert trained_pull.main([*args, str(write_result(tmp_path / "after", records=after))]) == 0
    assert "| +4.35 / +0.00 (+5.00 / +0.00) | +2.35 / +0.00 (+2.00 / +0.00) | 0.50 |" in capsys.readouterr().out
