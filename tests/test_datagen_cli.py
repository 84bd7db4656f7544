"""The entry points as users run them: exit codes, one-line messages, no partial output (SPEC §10)."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GENERATE = REPO / "data_generation" / "generate.py"


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, str(GENERATE), *args], capture_output=True, text=True,
                          cwd=cwd or REPO, env=os.environ.copy(), timeout=120)


def files_under(path):
    return [p for p in Path(path).rglob("*") if p.is_file()] if Path(path).exists() else []


def _bad_import(tmp_path, kind):
    src = tmp_path / "src"
    (src / "sync_random_o").mkdir(parents=True)
    facts = src / "sync_random_o" / "50.csv"
    header = ["Head", "Fact", "Alternate Facts"] if kind != "column" else ["Head", "Alternate Facts"]
    with open(facts, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerow(["Velmora", "oslo", "['kyiv']"][:len(header)])
        writer.writerow(["Ostrin", "kyiv", "['oslo'" if kind == "options" else "['oslo']"][:len(header)])
    prompts = src / "prompt_template" / "50"
    prompts.mkdir(parents=True)
    (prompts / "train.csv").write_text("question\n" + "".join(f"T{i} {{head}} is\n" for i in range(10)))
    bad = "No head here" if kind == "template" else "T-last {head} is"
    (prompts / "test.csv").write_text("question\n" + "".join(f"S{i} {{head}} is\n" for i in range(9)) + bad + "\n")
    where = {"column": f"{facts}: missing columns ['Fact']",
             "options": f"{facts}:3: fact_id 1: 'Alternate Facts' is not a list of strings",
             "template": f"{prompts / 'test.csv'}:11: template 'No head here'"}[kind]
    return ["mode=import", f"import.path={src}", "relation_ids=[50]", "num_options=2"], where


@pytest.mark.parametrize("case", ["relation", "vocab", "unwritable", "import-column", "import-options",
                                  "import-template"])
def test_bad_input_exits_2_with_one_clear_line_and_no_files(tmp_path, case):
    out = tmp_path / "out"
    if case == "relation":
        args, expected = ["relation_ids=[50,999]"], "error: relation '999': unknown relation id"
    elif case == "vocab":
        small = tmp_path / "small.txt"
        small.write_text("oslo\nkyiv\nquito\n")
        args = ["relation_ids=[50]", "objects.vocab_source=file", f"objects.vocab_file={small}"]
        expected = f"error: relation 50: vocabulary {small}: 3 distinct objects, need at least num_options=100"
    elif case == "unwritable":
        blocker = tmp_path / "a_file"
        blocker.write_text("")
        out = blocker / "sub"
        args, expected = ["relation_ids=[50]"], f"error: output_dir: {out}/sync_random_o: directory is not writable"
    else:
        args, expected = _bad_import(tmp_path, case.split("-")[1])
    result = cli(f"output_dir={out}", *args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert expected in result.stderr, result.stderr
    assert [p for p in files_under(tmp_path) if "src" not in p.parts] == (
        [tmp_path / "a_file"] if case == "unwritable" else [tmp_path / "small.txt"] if case == "vocab" else [])


def test_unknown_key_is_a_schema_error_naming_it(tmp_path):
    result = cli(f"output_dir={tmp_path}", "objects.vocab_sourse=file")
    assert result.returncode not in (0, 2)
    assert "vocab_sourse" in result.stderr
    assert files_under(tmp_path) == []


def test_gen_script_from_another_directory(tmp_path):
    result = subprocess.run(["bash", str(REPO / "data_generation" / "gen_script.sh"), f"output_dir={tmp_path}",
                             "relation_ids=[50]", "num_facts=3", "seed=3"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "sync_random_o" / "50.csv").read_text().splitlines()
    assert len(lines) == 4 and lines[0].startswith("fact_id,relation_id,Head,Fact,Alternate Facts")
    assert (tmp_path / "sync_random_o" / "manifest.json").is_file()
