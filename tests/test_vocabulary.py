"""One home per vocabulary: the relation-id syntax, the config hash, the pad-token rule, the choices
a config offers; and the stages meet through shared modules, never by importing each other."""
from __future__ import annotations

import ast
import hashlib
import json
from types import SimpleNamespace

import pytest

from util_public import keytokens, matching, prompts, relspec, runinfo, tokenspans
from util_public.errors import UserError
from util_public.evaluation import results
from util_public.paths import REPO_ROOT
from util_public.training import masking, schema


@pytest.mark.parametrize("spec, groups, atomic, separate", [
    ("50", [("50",)], ["50"], ["50"]),
    (" 12+21+50 ", [("12",), ("21",), ("50",)], ["12", "21", "50"], ["12", "21", "50"]),
    ("12+21&105", [("12",), ("21", "105")], ["12", "21", "105"], "compositions"),
    ("105-21", [("105-21",)], ["105-21"], ["105-21"]),
    ("50+50&71", [("50",), ("50", "71")], ["50", "71"], "compositions"),
    ("50+", "empty part", "empty part", "empty part"),
    ("&71", "empty part", "empty part", "compositions"),
    ("50+71+50", "names 50 twice", "names 50 twice", "names 50 twice"),
    ("21&105+21&105", "names 21&105 twice", "names 21&105 twice", "compositions"),
])
def test_one_relation_spec_parser(spec, groups, atomic, separate):
    for fn, expected in ((relspec.groups, groups), (relspec.atomic, atomic), (relspec.separate, separate)):
        if isinstance(expected, str):
            with pytest.raises(UserError, match=expected):
                fn(spec)
        else:
            assert fn(spec) == expected


def test_one_config_hash_keeps_both_stages_values():
    """Runs resume and results are reused by hash: the one implementation gives the values the
    two former ones gave (compact JSON for runs, json.dumps' default spacing for results)."""
    payload = {"b": [1, 2.5, None], "a": {"é": True}}
    spaced = json.dumps(payload, sort_keys=True, ensure_ascii=False)
    compact = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert results.config_hash(payload) == hashlib.sha256(spaced.encode()).hexdigest()
    assert runinfo.config_hash(payload) == hashlib.sha256(compact.encode()).hexdigest()


@pytest.mark.parametrize("pad, eos, expected", [(3, 7, 3), (None, 7, 7), (0, None, 0), (None, None, "neither")])
def test_one_pad_token_rule(pad, eos, expected):
    tok = SimpleNamespace(pad_token_id=pad, eos_token_id=eos, pad_token=None if pad is None else "<pad>",
                          eos_token=None if eos is None else "</s>", name_or_path="t")
    if expected == "neither":
        with pytest.raises(UserError, match="neither a pad nor an EOS"):
            tokenspans.ensure_pad_token(tok)
        return
    assert tokenspans.pad_id(tok) == expected
    tokenspans.ensure_pad_token(tok)
    assert tok.pad_token == ("<pad>" if pad is not None else "</s>")


def test_one_answer_matcher_for_evaluation_and_the_memorization_check():
    from util_public.evaluation import generation
    from util_public.training import memcheck

    assert generation.prefix is matching.prefix and memcheck.prefix is matching.prefix
    assert [matching.prefix(r, "Lisbon") for r in (" lisbon.", "Lisbon\nx", "lisbonia", "ｌｉｓｂｏｎ")] == \
        [True, True, False, True]


def test_config_choices_are_read_from_where_they_are_implemented():
    assert schema._CHOICES["loss.mode"] is masking.MODES
    assert schema._CHOICES["loss.occurrence"] is masking.OCCURRENCES
    assert schema._CHOICES["key_token.resize"] is keytokens.RESIZE
    assert schema._CHOICES["key_token.init"] is keytokens.INIT
    assert schema._CHOICES["data.combine_spacing"] is prompts.COMBINE_SPACINGS


def _imports(path) -> set[str]:
    """Absolute module names a file imports (relative imports resolved against its package)."""
    rel = path.relative_to(REPO_ROOT).with_suffix("")
    package = list(rel.parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            out |= {module} | {f"{module}.{a.name}" for a in node.names}
    return out


def test_evaluation_never_imports_training():
    evaluation = [*REPO_ROOT.glob("util_public/evaluation/**/*.py"), *REPO_ROOT.glob("evaluation/**/*.py"),
                  *REPO_ROOT.glob("util_public/representation*.py")]
    assert len(evaluation) > 20
    crossing = {str(p.relative_to(REPO_ROOT)): sorted(m for m in _imports(p) if m.startswith("util_public.training"))
                for p in evaluation}
    assert {p: m for p, m in crossing.items() if m} == {}
