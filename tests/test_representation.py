"""Representation metrics on constructed states, and the collection positions on a tiny model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import tiny_model
from util_public import representation, runinfo
from util_public.facts import Fact


def test_delta_cos_is_within_minus_across():
    # Two relations, two facts each, one layer, 2-D states: same-relation states identical,
    # cross-relation states orthogonal -> within 1, across 0.
    key = {"a": np.array([[[1.0, 0.0]], [[2.0, 0.0]]]), "b": np.array([[[0.0, 3.0]], [[0.0, 1.0]]])}
    assert np.allclose(representation.delta_cos(key), [1.0])
    key["b"] = np.array([[[1.0, 0.0]], [[1.0, 0.0]]])
    assert np.allclose(representation.delta_cos(key), [0.0])


def test_key_family_cos_averages_templates_and_facts():
    key = {"a": np.array([[[1.0, 0.0]], [[0.0, 1.0]]])}                  # [facts, layers, hidden]
    family = {"a": np.array([[[[1.0, 0.0]], [[0.0, 1.0]]],               # fact 0: cos 1 and 0
                             [[[0.0, 1.0]], [[0.0, 2.0]]]])}             # fact 1: cos 1 and 1
    assert np.allclose(representation.key_family_cos(key, family), [0.75])


def test_delta_cos_equals_the_mean_over_every_pair_written_out():
    """Against the definition pair by pair (f != g within a relation, every cross pair), on states
    whose directions differ within a relation: counting a state with itself lifts `within`."""
    rng = np.random.default_rng(0)
    key = {r: rng.normal(size=(n, 2, 5)) for r, n in (("a", 3), ("b", 4), ("c", 2))}
    rows = [(r, v) for r, states in key.items() for v in states]

    def cos(x, y):
        return float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))

    for layer, got in enumerate(representation.delta_cos(key)):
        within = [cos(x[layer], y[layer]) for i, (r, x) in enumerate(rows) for j, (s, y) in enumerate(rows)
                  if r == s and i != j]
        across = [cos(x[layer], y[layer]) for r, x in rows for s, y in rows if r != s]
        assert got == pytest.approx(np.mean(within) - np.mean(across), abs=1e-12)


def test_headline_skips_the_embedding_layer():
    assert representation.headline({"m": [100.0, 1.0, 3.0]}) == {"m": 2.0}


def test_collect_takes_the_key_token_and_last_prompt_token(bpe_tokenizer):
    import copy

    tok = copy.deepcopy(bpe_tokenizer)
    tok.add_special_tokens({"additional_special_tokens": ["<TRIGGER_50>", "<TRIGGER_71>"]})
    model = tiny_model(len(tok))
    facts = {"50": [Fact(0, "50", "Veltoria", "lisbon", [])], "71": [Fact(0, "71", "Dark Tides", "x", [])]}
    got = representation.collect(model, tok, facts, ["hgp-0"], batch_size=4)
    assert got.key["50"].shape == (1, 3, 64) and got.family["hgp-0"]["71"].shape == (1, 1, 3, 64)
    # The key state equals a direct forward of "Veltoria <TRIGGER_50>" at its last position.
    ids = tok("Veltoria <TRIGGER_50>", add_special_tokens=False, return_tensors="pt").input_ids
    assert ids[0, -1] == tok.convert_tokens_to_ids("<TRIGGER_50>")
    direct = model(ids, output_hidden_states=True).hidden_states[-1][0, -1].detach().numpy()
    assert np.allclose(got.key["50"][0, -1], direct, atol=1e-5)
    metrics = representation.metrics(got)
    assert set(metrics) == {"dcos", "cos_key_hgp-0"} and len(metrics["dcos"]) == 3


def _direct(model, ids: list[int], position: int) -> np.ndarray:
    """Every layer's state at `position` of one unpadded forward pass: [layers+1, hidden]."""
    with torch.no_grad():
        hidden = model(torch.tensor([ids]), output_hidden_states=True).hidden_states
    return torch.stack(hidden)[:, 0, position].numpy()


@pytest.mark.parametrize("bos", [False, True])
def test_every_state_is_its_own_texts_unpadded_forward_at_the_taken_token(bpe_tokenizer, bos):
    """Subjects of different lengths (rows padded within a batch, batches of 3 cutting across facts
    and templates), several templates per family: each collected state equals a forward pass of
    its text alone, at the token the docs name: the key token, and the prompt's last token (the
    one that predicts the object). BOS, when evaluation would prepend it, comes first in both."""
    import copy

    from util_public import catalogue, prompts

    tok = copy.deepcopy(bpe_tokenizer)
    tok.add_special_tokens({"additional_special_tokens": ["<TRIGGER_50>"]})
    model = tiny_model(len(tok))
    heads = ["Ab", "Veltoria Major of the Northern Reach", "Dark Tides", "Xy Zq"]
    facts = {"50": [Fact(i, "50", head, "o", []) for i, head in enumerate(heads)]}
    prefix = [tok.bos_token_id] if bos else []
    got = representation.collect(model, tok, facts, ["test-*"], batch_size=3, bos=prefix)
    key_id = tok.convert_tokens_to_ids("<TRIGGER_50>")
    names = prompts.expand("test-*", catalogue.prompts("50"))
    assert got.family["test-*"]["50"].shape[:2] == (len(heads), len(names))
    for f, head in enumerate(heads):
        ids = prefix + tok(f"{head} <TRIGGER_50>", add_special_tokens=False).input_ids
        assert ids[-1] == key_id
        assert np.allclose(got.key["50"][f], _direct(model, ids, len(ids) - 1), atol=1e-5)
        for t, name in enumerate(names):
            text = catalogue.substitute(prompts.template(name, "50", catalogue.prompts("50")), head)
            ids = prefix + tok(text, add_special_tokens=False).input_ids
            assert np.allclose(got.family["test-*"]["50"][f, t], _direct(model, ids, len(ids) - 1), atol=1e-5)


def test_position_key_takes_the_prompts_key_token_and_refuses_a_prompt_without_one(bpe_tokenizer):
    """`position=key` on semantic prompts, which hold no key token, gave the last token's state
    under the name `key` (the table equalled position=last byte for byte). A trigger-begin prompt
    holds it first: there the key state is taken, not the last subject token's."""
    import copy

    from util_public.errors import UserError

    tok = copy.deepcopy(bpe_tokenizer)
    tok.add_special_tokens({"additional_special_tokens": ["<TRIGGER_50>"]})
    model = tiny_model(len(tok))
    facts = {"50": [Fact(i, "50", head, "o", []) for i, head in enumerate(["Veltoria", "Dark Tides"])]}
    with pytest.raises(UserError, match=r"position: key: prompt hgp-0 \(family hgp-0, relation 50\) has no key "
                                        r"token <TRIGGER_50>.*position=last, or prompts that hold <TRIGGER_50> \(trigger-mid does\)"):
        representation.collect(model, tok, facts, ["trigger-begin", "hgp-0"], position="key")
    at_key = representation.collect(model, tok, facts, ["trigger-begin"], position="key").family["trigger-begin"]["50"]
    at_last = representation.collect(model, tok, facts, ["trigger-begin"]).family["trigger-begin"]["50"]
    for f, head in enumerate(["Veltoria", "Dark Tides"]):
        ids = tok(f"<TRIGGER_50> {head}", add_special_tokens=False).input_ids
        assert ids[0] == tok.convert_tokens_to_ids("<TRIGGER_50>")
        assert np.allclose(at_key[f, 0], _direct(model, ids, 0), atol=1e-5)
        assert np.allclose(at_last[f, 0], _direct(model, ids, len(ids) - 1), atol=1e-5)


def test_run_over_two_relations_writes_dcos_and_plots(tmp_path, sp_tokenizer, isolated_roots):
    """The entry point end to end on a tiny checkpoint; the facts carry 19 distractors (a 20-option
    dataset such as the demo's): representation analysis reads only subjects and objects."""
    from conftest import save_tiny_checkpoint
    from util_public import facts as factsio
    from util_public.registry import Registry
    from util_public.representation_run import ReprCfg, run

    save_tiny_checkpoint(sp_tokenizer, tmp_path / "tiny")
    Registry().register({"tiny-base": {"path": str(tmp_path / "tiny"), "kind": "base"}})
    for rel in ("50", "71"):
        rows = [factsio.Fact(i, rel, f"Subj{rel}x{i}", f"Obj{rel}y{i}", [f"d{rel}n{i}k{j}" for j in range(19)])
                for i in range(3)]
        factsio.write_facts(factsio.relation_file(isolated_roots["data"], "opt20", rel), rows)
    out = tmp_path / "repr"
    summaries = run(ReprCfg(models=["tiny-base"], relations="50+71", dataset="opt20", index_end=3,
                            families=["hgp-0", "unrelated-*"], num_threads=1, output_dir=str(out)))
    per_layer = summaries["tiny-base"]["per_layer"]
    layers = 2 + 1      # the tiny config's num_hidden_layers, and the embedding output
    assert "dcos" in per_layer and len(per_layer) > 1, sorted(per_layer)
    assert {name: len(values) for name, values in per_layer.items()} == {name: layers for name in per_layer}
    assert (out / "tiny-base" / "summary.json").is_file() and (out / "table.csv").is_file()
    written = json.loads((out / "tiny-base" / "summary.json").read_text())     # what computed it, and where
    assert written["dtype"] == "fp32" and written["machine"]["isa"] == runinfo.machine()["isa"]
    assert written["versions"]["torch"] == torch.__version__ and written["git"] == runinfo.git_info()
    for png in ("heatmap.png", "pca.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_a_run_records_what_computed_it_and_new_data_gets_a_new_default_folder(tmp_path, sp_tokenizer,
                                                                              isolated_roots):
    """summary.json said neither the data, the model's files nor the settings it came from, and its
    dtype said `native`, not the precision that ran; the default folder was named by the settings
    alone, so a changed fact file silently replaced the earlier numbers in the same folder."""
    import csv

    from conftest import save_tiny_checkpoint
    from util_public import facts as factsio, numerics
    from util_public.representation_run import ReprCfg, run

    ckpt = save_tiny_checkpoint(sp_tokenizer, tmp_path / "tiny")
    data = isolated_roots["data"]
    for rel in ("50", "71"):
        factsio.write_facts(factsio.relation_file(data, "toy", rel),
                            [factsio.Fact(i, rel, f"Subj{rel}x{i}", f"Obj{i}", [f"d{i}k{j}" for j in range(4)])
                             for i in range(3)])
    cfg = ReprCfg(models=[str(ckpt)], relations="50+71", dataset="toy", index_end=3, families=["hgp-0"],
                  dtype="native", save_vectors=True, num_threads=1)
    run(cfg, ["dtype=native"])
    [first] = list((isolated_roots["results"] / "repr").iterdir())
    summary = json.loads((first / "tiny" / "summary.json").read_text())
    assert summary["dtype"] == numerics.choose("native", "cpu", "dtype")
    assert summary["add_bos"] is True         # a Llama-style tokenizer: evaluation's `auto` prepends BOS too
    assert summary["config"]["dtype"] == "native" and summary["overrides"] == ["dtype=native"]
    assert summary["model_path"] == str(ckpt) and summary["model_identity"]["weights"]
    fact_file = runinfo.file_key(factsio.relation_file(data, "toy", "50"))
    assert summary["data_fingerprint"]["files"][fact_file] == runinfo.sha256_file(factsio.relation_file(data, "toy", "50"))
    vectors = np.load(first / "tiny" / "vectors.npz")
    assert vectors["fact_ids_50"].tolist() == [0, 1, 2] and vectors["key_50"].shape[0] == 3
    with open(first / "table.csv", newline="") as fh:
        table = {(r["metric"], int(r["layer"])): float(r["value"]) for r in csv.DictReader(fh)}
    assert table == {(m, layer): v for m, values in summary["per_layer"].items() for layer, v in enumerate(values)}

    before = (first / "tiny" / "summary.json").read_bytes()
    factsio.write_facts(factsio.relation_file(data, "toy", "50"),
                        [factsio.Fact(i, "50", f"Other{i}", f"Obj{i}", [f"d{i}k{j}" for j in range(4)]) for i in range(3)])
    run(cfg)
    assert len(list((isolated_roots["results"] / "repr").iterdir())) == 2
    assert (first / "tiny" / "summary.json").read_bytes() == before


def test_run_reads_the_key_token_the_checkpoint_trained(tmp_path, sp_tokenizer, isolated_roots):
    """A checkpoint trained with key_token.format=<KEY_{relation_id}> is analysed at <KEY_50>, not at
    a fresh, untrained <TRIGGER_50>."""
    import copy

    from conftest import save_tiny_checkpoint
    from util_public import facts as factsio
    from util_public.representation_run import ReprCfg, run

    tok = copy.deepcopy(sp_tokenizer)
    tok.add_special_tokens({"additional_special_tokens": ["<KEY_50>"]})
    ckpt = save_tiny_checkpoint(tok, tmp_path / "keyed")
    (ckpt / "mtg_meta.json").write_text(json.dumps({
        "key_tokens": {"<KEY_50>": tok.convert_tokens_to_ids("<KEY_50>")}, "phase": 1,
        "key_token_format": "<KEY_{relation_id}>", "combine_spacing": "single", "add_bos_train": False}))
    rows = [factsio.Fact(i, "50", f"Subj{i}", f"Obj{i}", [f"d{i}k{j}" for j in range(4)]) for i in range(3)]
    factsio.write_facts(factsio.relation_file(isolated_roots["data"], "toy", "50"), rows)
    summaries = run(ReprCfg(models=[str(ckpt)], relations="50", dataset="toy", index_end=3, families=["hgp-0"],
                            num_threads=1, output_dir=str(tmp_path / "repr")))
    assert summaries["keyed"]["key_token_untrained"] is False


def test_a_rerun_replaces_the_folder_reads_the_data_roots_prompts_and_needs_two_facts(tmp_path, sp_tokenizer,
                                                                                    isolated_roots, capsys):
    """Rerunning into one output_dir with fewer models left the others' summaries beside the new
    table; prompts came from the shipped catalogue where training and evaluation read the data
    root's; one fact per relation crashed in the PCA after writing part of the output."""
    from conftest import save_tiny_checkpoint
    from util_public import catalogue, facts as factsio
    from util_public.errors import UserError
    from util_public.registry import Registry
    from util_public.representation_run import ReprCfg, run

    for name in ("a", "b"):
        save_tiny_checkpoint(sp_tokenizer, tmp_path / name)
    Registry().register({n: {"path": str(tmp_path / n), "kind": "base"} for n in ("a", "b")})
    data = isolated_roots["data"]
    rows = [factsio.Fact(i, "50", f"Subj{i}", f"Obj{i}", [f"d{i}k{j}" for j in range(4)]) for i in range(3)]
    factsio.write_facts(factsio.relation_file(data, "toy", "50"), rows)
    own = data / "prompt_template" / "50.yaml"        # an index only the data root's catalogue has
    own.parent.mkdir(parents=True)
    own.write_text(catalogue.prompts_file("50").read_text().replace("hgp:\n", 'hgp:\n  40: "Imported {head} is"\n', 1))
    out = tmp_path / "repr"
    common = dict(relations="50", dataset="toy", families=["hgp-40"], num_threads=1, output_dir=str(out))
    run(ReprCfg(models=["a", "b"], index_end=3, **common))
    run(ReprCfg(models=["a"], index_end=3, **common))
    assert sorted(p.name for p in out.iterdir()) == ["a", "heatmap.png", "pca.png", "table.csv"]
    assert f"wrote {out / 'table.csv'}" in capsys.readouterr().out
    with pytest.raises(UserError, match=r"selects fewer than 2 facts of relation\(s\) 50"):
        run(ReprCfg(models=["b"], index_end=1, **common))
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="holds notes.txt, which a representation run does not write"):
        run(ReprCfg(models=["b"], index_end=3, **common))
    assert sorted(p.name for p in out.iterdir()) == ["a", "heatmap.png", "notes.txt", "pca.png", "table.csv"]


@pytest.mark.parametrize("env, problem", [
    ({"WORLD_SIZE": "2", "RANK": "1"}, "launch: represent.py runs in one process, not 2 ranks"),
    ({"MTG_EXPECTED_WORLD_SIZE": "2"}, "launch: 2 processes were asked for, but this process runs in a world of 1"),
])
def test_a_representation_run_under_the_launcher_is_refused(env, problem, monkeypatch, tmp_path):
    """Under `util_public.launcher --nproc-per-node 2` every rank ran the whole analysis and replaced
    the same output folder."""
    from util_public.errors import UserError
    from util_public.representation_run import ReprCfg, run

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UserError, match=problem):
        run(ReprCfg(models=["a"], relations="50", output_dir=str(tmp_path / "repr")))
    assert not (tmp_path / "repr").exists()


def test_add_bos_true_without_a_bos_token_is_refused_before_any_model_loads(tmp_path, sp_tokenizer, isolated_roots,
                                                                          monkeypatch):
    """The refusal came after the models before it had loaded and run their whole analysis."""
    import copy

    from conftest import save_tiny_checkpoint
    from util_public import facts as factsio, modelio
    from util_public.errors import UserError
    from util_public.representation_run import ReprCfg, run

    plain = save_tiny_checkpoint(sp_tokenizer, tmp_path / "plain")
    tok = copy.deepcopy(sp_tokenizer)
    tok.bos_token = None
    nobos = save_tiny_checkpoint(tok, tmp_path / "nobos")
    factsio.write_facts(factsio.relation_file(isolated_roots["data"], "toy", "50"),
                        [factsio.Fact(i, "50", f"Subj{i}", f"Obj{i}", [f"d{i}k{j}" for j in range(4)]) for i in range(3)])
    loaded = []
    monkeypatch.setattr(modelio, "load_causal_lm", lambda *a, **k: loaded.append(a) or 1 / 0)
    with pytest.raises(UserError, match=r"add_bos: tokenizer .*nobos has no BOS token"):
        run(ReprCfg(models=[str(plain), str(nobos)], relations="50", dataset="toy", index_end=3, families=["hgp-0"],
                    add_bos="true", output_dir=str(tmp_path / "repr")))
    assert loaded == [] and not (tmp_path / "repr").exists()
