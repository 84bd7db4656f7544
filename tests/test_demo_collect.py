"""`util_public.demo_collect`: the comparison table RESULTS.md is built from."""
import json

import pytest

from util_public import demo, demo_collect
from util_public.errors import UserError


XEON = {"processor": "Intel(R) Xeon(R) Processor", "isa": ["amx_bf16", "avx2"], "torch_threads": 2, "gpus": []}


def _results(path, relation_id, p1_train, n_unseen=50, where=None):
    row = {c[0]: 0.5 for c in demo.COLUMNS} | {"n_unseen": n_unseen}
    rows = {label: dict(row) for label in demo.ROWS}
    rows["phase 1"]["train acc (unseen)"] = p1_train
    rows["phase 2 only"]["key acc (all)"] = None
    path.mkdir()
    (path / "results.json").write_text(json.dumps({"rows": rows, "config": {"relation_id": relation_id},
                                                   "timings_s": {"a": 60, "b": 30}, **(where or {})}))
    return path / "results.json"


def test_lines_carry_standard_errors_the_mean_and_where_each_ran(tmp_path):
    a = _results(tmp_path / "s0", "50", 0.9, where={"machine": XEON, "formats": "bf16 training, fp32 scoring"})
    b = _results(tmp_path / "s1", "12+50", 0.7)                         # written before machines were recorded
    text = demo_collect.table([demo_collect.load(a), demo_collect.load(b)], mean=True)
    lines = text.splitlines()
    assert lines[0].endswith("| stages (min) | machine; formats |") and lines[1].count("---") == 12
    assert lines[2].startswith("| s0 | 50 | 0.50 | 0.90 ± 0.04 |")
    assert lines[2].endswith("| 1.5 | Intel(R) Xeon(R) Processor (amx_bf16, avx2), 2 threads; bf16 training, fp32 scoring |")
    assert lines[3].startswith("| s1 | 100 | ") and lines[3].endswith("| 1.5 | not recorded |")   # 2 relations: 2 x n
    assert "0.80 (sd 0.14)" in lines[4] and lines[4].count("|") == lines[2].count("|")


def test_the_mean_of_a_cell_only_one_run_has_shows_no_spread(tmp_path):
    a, b = _results(tmp_path / "s0", "50", 0.9), _results(tmp_path / "s1", "50", None)   # b: no value there
    mean = demo_collect.table([demo_collect.load(a), demo_collect.load(b)], mean=True).splitlines()[-1]
    assert mean.startswith("| mean of 2 |") and "0.90 (sd n/a)" in mean


@pytest.mark.parametrize("content", [
    {},
    {"rows": {}, "config": {"relation_id": "50"}},                                    # was a KeyError traceback
    {"rows": {"phase 1": {"n_unseen": 50}}, "config": {"relation_id": "50"}},          # a row, no columns
    {"rows": [], "config": {"relation_id": "50"}},
    {"rows": {}, "config": "50"},
])
def test_a_file_that_is_not_demo_output_is_a_user_error(tmp_path, content):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps(content))
    with pytest.raises(UserError, match="not a demo results.json"):
        demo_collect.load(bad)
