"""The main demo driver end to end on a tiny from-config model: table, PNG, reuse on rerun."""
import json

import pytest

from conftest import save_tiny_checkpoint
from util_public import demo, objectcase, runinfo
from util_public.errors import UserError
from util_public.facts import read_facts
from util_public.registry import Registry

TINY = ["model=tiny-base", "num_facts=8", "k=4", "threads=1", "num_options=5", "eval.dtype=fp32",
        "eval.test_prompts=[test-0]", "eval.gen_max_new_tokens=3", "eval.known_max_facts=3",
        "phase1=[train.learning_rate=5e-3,train.per_device_train_batch_size=4,train.epochs=2,"
        "save.every_epoch=false,train.warmup_steps=0]",
        "phase2=[train.learning_rate=1e-3,train.per_device_train_batch_size=2,train.epochs=1,"
        "save.every_epoch=false,train.warmup_steps=0]"]


def test_demo_writes_table_and_png_for_four_models_and_reuses_work(tmp_path, sp_tokenizer, isolated_roots, capsys):
    save_tiny_checkpoint(sp_tokenizer, tmp_path / "tiny")
    Registry().register({"tiny-base": {"path": str(tmp_path / "tiny"), "kind": "base"}})
    user_registry = isolated_roots["registry"].read_text()
    out = tmp_path / "demo"

    assert demo.main(["quick", f"out_dir={out}", *TINY]) == 0
    table = (out / "table.md").read_text()
    memorize, probes = table.split("**Locality")
    rows = [line for line in memorize.splitlines() if line.startswith("| ") and not line.startswith("| model")]
    assert [r.split("|")[1].strip() for r in rows] == list(demo.ROWS)
    key_cells = [r.split("|")[2].strip() for r in rows]
    assert key_cells[0] == "n/a" and key_cells[3] == "n/a"          # no key token without Phase 1
    assert key_cells[1] != "n/a" and key_cells[2] != "n/a"
    probe_lines = [line for line in probes.splitlines() if line.startswith("| ")]
    assert probe_lines[0].split(" | ")[1:] == PROBE_COLUMNS[:-1] + [PROBE_COLUMNS[-1] + " |"]
    assert [r.split("|")[1].strip() for r in probe_lines[1:]] == list(demo.ROWS)
    assert (out / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads((out / "results.json").read_text())
    assert result["rows"]["phase 1"]["n_unseen"] == 4
    for row in result["rows"].values():     # every probe has a value for every model (key tokens not needed)
        assert all(row[c] is not None for c in PROBE_COLUMNS) and row["text perplexity"] > 1
    assert len(list((out / "results" / "mc" / "hgp-0" / "tiny-base" / "known").iterdir())) == 2
    # The trained relation's real facts again, with none of the memorized objects among the options.
    trained = {f.object for f in read_facts(out / "data" / "sync_random_o_opt5" / "50.csv", num_options=None)}
    [records] = (out / "results" / "mc" / "hgp-0" / "tiny-base" / "known.untrained-sync_random_o_opt5" / "50").glob(
        "*/*/records.jsonl")
    offered = [json.loads(line)["options"] for line in records.read_text().splitlines()]
    assert len(offered) == 3 and all(len(o) == 5 for o in offered) and not trained & {x for o in offered for x in o}
    # Self-contained: checkpoints were registered in the demo's registry copy, not the user's.
    assert isolated_roots["registry"].read_text() == user_registry
    assert "phase1-" in (out / "models.json").read_text()
    assert table.splitlines()[0].endswith("; fp32 training, fp32 scoring")   # the formats that ran
    machine = runinfo.machine()                                             # and the machine they ran on
    assert table.splitlines()[1] == f"machine: {runinfo.describe_machine(machine)}"
    assert result["machine"]["isa"] == machine["isa"] and result["machine"]["torch_threads"] == 1
    assert result["formats"] == "fp32 training, fp32 scoring"
    assert table in capsys.readouterr().out

    assert demo.main(["quick", f"out_dir={out}", *TINY]) == 0          # rerun: everything reused
    again = capsys.readouterr()
    assert again.out.count("already complete") == 3
    assert "cached:" in again.err and (out / "table.md").read_text() == table


PROBE_COLUMNS = ["known acc (r50)", "known acc, no trained options (r50)", "known gen prefix (r50)",
                 "known acc (r71)", "known gen prefix (r71)",
                 "text perplexity", "train emission (unseen)", "unrelated gen prefix (unseen)",
                 "unrelated emission (unseen)"]


def test_recipes_load_and_bad_settings_are_user_errors():
    full, quick = demo.load_config("full"), demo.load_config("quick")
    assert full.model == "qwen2.5-coder-0.5b-instruct" and quick.model == "smollm2-135m"
    assert demo.output_dir(quick).name == "demo-quick"
    with pytest.raises(UserError, match="k=100"):
        demo.load_config("quick", ["k=100"])
    with pytest.raises(UserError, match="no recipe"):
        demo.load_config("nonexistent")
    with pytest.raises(UserError, match="unknown object source 'made-up'"):
        demo.load_config("quick", ["objects=made-up"])
    with pytest.raises(UserError, match="unknown probes"):
        demo.load_config("quick", ["eval.probes=[known,ppl]"])
    for bad, message in [("seed=-1", "seed: must be >= 0"), ("data_seed=4294967296", "data_seed: must be"),
                         ("threads=0", "threads: must be >= 1"), ("num_options=1", "num_options: must be >= 2"),
                         ("object_case=upper", r"demo_quick.yaml: object_case: 'upper' is not one of as_is, title")]:
        with pytest.raises(UserError, match=message):      # before the first stage runs, not inside it
            demo.load_config("quick", [bad])


@pytest.mark.parametrize("settings, expected", [
    ([], []),                                                    # the evaluation's own defaults
    (["eval.gen_batch_size=16"], ["gen.batch_size=16"]),         # the tables made before the default was 64
    (["eval.mc_batch_size=8", "eval.gen_batch_size=2"], ["mc.batch_size=8", "gen.batch_size=2"]),
])
def test_the_demo_passes_its_batch_sizes_to_every_evaluation(settings, expected):
    cfg = demo.load_config("full", settings)
    for source, overrides, _, _ in demo.evaluations(cfg, {"50"}):
        assert [o for o in overrides if ".batch_size=" in o] == expected, source


@pytest.mark.parametrize("objects, options, data_seed, name", [("catalogue", 100, 0, "sync_random_o"),
                                                               ("catalogue", 20, 0, "sync_random_o_opt20"),
                                                               ("synthetic", 100, 0, "sync_synthetic_o"),
                                                               ("synthetic", 20, 0, "sync_synthetic_o_opt20"),
                                                               ("catalogue", 20, 3, "sync_random_o_opt20_seed3"),
                                                               ("catalogue", 20, 3, "sync_random_o_opt20_title_seed3")])
def test_each_object_source_option_count_and_data_seed_has_its_own_dataset(objects, options, data_seed, name,
                                                                          isolated_roots):
    case = "title" if "_title" in name else "as_is"
    cfg = demo.load_config("quick", [f"objects={objects}", f"num_options={options}", "num_facts=6", "k=3",
                                     f"data_seed={data_seed}", f"object_case={case}"])
    assert demo.dataset(cfg) == name
    demo.ensure_facts(cfg)
    facts = read_facts(isolated_roots["data"] / name / "50.csv", num_options=options)
    real = set((demo.paths.REPO_ROOT / "util_public/catalogue/vocab/50.txt").read_text().split("\n"))
    assert len(facts) == 6 and all(len(f.options) == options - 1 for f in facts)
    assert all((f.object.lower() in real) == (objects == "catalogue") for f in facts)
    assert all((f.object == objectcase.title(f.object.lower())) == (case == "title") for f in facts)
    assert all(f"mc.object_case={case}" in overrides for _, overrides, _, _ in demo.evaluations(cfg, {"50"}))


def test_a_changed_data_setting_gets_its_facts_and_runs(isolated_roots):
    """A rerun with another data seed reused the old seed's facts and finished runs; one with more
    facts reused the shorter file."""
    def facts_and_p1(*settings):
        cfg = demo.load_config("quick", ["num_options=5", "k=3", *settings])
        demo.ensure_facts(cfg)
        rows = read_facts(isolated_roots["data"] / demo.dataset(cfg) / "50.csv", num_options=None)
        return [(f.head, f.object) for f in rows], demo.run_name(demo.stage_overrides(cfg)["p1"])

    six, p1 = facts_and_p1("num_facts=6")
    other_seed, p1_other_seed = facts_and_p1("num_facts=6", "data_seed=1")
    assert other_seed != six and p1_other_seed != p1
    ten, _ = facts_and_p1("num_facts=10")
    assert len(ten) == 10 and ten[:6] == six                # the longer file keeps the first six
    again, p1_again = facts_and_p1("num_facts=6")
    assert again[:6] == six and p1_again == p1


@pytest.mark.parametrize("bad, where", [(["seeds=0"], "seeds"), (["k=abc"], "k"), (["eval.probs=[text]"], "eval.probs")])
def test_a_misspelt_or_mistyped_setting_is_one_error_naming_it(bad, where):
    with pytest.raises(UserError, match=rf"demo \(.*demo_quick.yaml\): {where}: "):
        demo.load_config("quick", bad)


@pytest.mark.parametrize("bad", ["eval.known_relations=[999]", "eval.test_prompts=[test-99]",
                                 "eval.key_prompt=trigger-midd"])
def test_an_evaluation_setting_the_demo_cannot_use_fails_before_training(tmp_path, sp_tokenizer, isolated_roots,
                                                                         monkeypatch, bad):
    """Both failed only inside the Phase-1 model's evaluation, after all three training stages."""
    save_tiny_checkpoint(sp_tokenizer, tmp_path / "tiny")
    Registry().register({"tiny-base": {"path": str(tmp_path / "tiny"), "kind": "base"}})
    trained = []
    monkeypatch.setattr(demo, "train", lambda *args: trained.append(args))
    cfg = demo.load_config("quick", [f"out_dir={tmp_path / 'demo'}", *TINY, bad])
    with pytest.raises(UserError):
        demo.run_demo(cfg)
    assert trained == []


def test_demo_trains_relations_jointly_and_extra_overrides_win(tmp_path, sp_tokenizer, isolated_roots):
    save_tiny_checkpoint(sp_tokenizer, tmp_path / "tiny")
    Registry().register({"tiny-base": {"path": str(tmp_path / "tiny"), "kind": "base"}})
    out = tmp_path / "demo2"
    args = ["quick", f"out_dir={out}", "relation_id=50+71", *TINY, "phase2_extra=[train.epochs=2]",
            "eval.probes=[cross]"]
    assert demo.main(args) == 0
    result = json.loads((out / "results.json").read_text())
    for row in result["rows"].values():       # the table's value is the mean of the two relations
        per = row["per_relation"]
        assert set(per) == {"50", "71"}
        assert row["train acc (unseen)"] == pytest.approx((per["50"]["train acc (unseen)"] +
                                                          per["71"]["train acc (unseen)"]) / 2)
    table = (out / "table.md").read_text()
    assert "relations 50+71 (mean over relations)" in table and "\nrelation 71\n" in table
    assert result["rows"]["phase 1"]["key acc (all)"] is not None     # both key tokens were learned
    cross = ["cross own acc_norm (unseen)", "cross memorized wins_norm (unseen)", "cross asked-type wins_norm (unseen)"]
    assert all(row["per_relation"]["71"][c] is not None for row in result["rows"].values() for c in cross)
    cross_key = [result["rows"][label]["per_relation"]["50"]["cross-key memorized wins_norm (unseen)"] for label in demo.ROWS]
    assert [v is not None for v in cross_key] == [False, True, True, False]   # trigger-mid@71: Phase-1 models only
    assert "known acc (r50)" not in result["rows"]["base"]          # only the chosen probes
    assert (out / "results" / "mc" / "hgp-0@105" / "tiny-base" / "sync_random_o_opt5.pool-105" / "71").is_dir()
    manifest = json.loads((out / "runs" / result["models"]["phase 1 + phase 2"].rsplit("_checkpoint", 1)[0]
                           / "manifest.json").read_text())
    assert max(int(e) for e in manifest["checkpoints"]) == 2          # phase2_extra's epochs=2 won over 1
