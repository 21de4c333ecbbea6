"""Shared fixtures: small random checkpoints written the way the real ones are, and a clean weights search.

Hugging Face checkpoints come from transformers' own MistralForCausalLM.save_pretrained, built from
an explicit MistralConfig (never its defaults: eps 1e-6 and sliding_window 4096 are not Mistral 7B's).
"""
from __future__ import annotations

import math

import pytest
import torch

import mistral_edu as me
from mistral_edu.tokenizer import mistral_common_v1_path


def small_config(**overrides) -> me.ModelConfig:
    """A two-layer model with the 7B's structure; rope_theta 1e6 so a silently defaulted 1e4 shows."""
    fields = dict(dim=64, n_layers=2, head_dim=16, hidden_dim=160, n_heads=4, n_kv_heads=2, norm_eps=1e-5,
                  vocab_size=256, rope_theta=1e6, sliding_window=None, max_seq_len=128)
    return me.ModelConfig(**{**fields, **overrides})


def hf_config(cfg: me.ModelConfig, attn_implementation: str = "eager"):
    """transformers' MistralConfig with every field that shapes the computation set from cfg."""
    from transformers import MistralConfig  # here, not at the top: only the parity tests pay its seconds of import
    return MistralConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.hidden_dim,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads,
        head_dim=cfg.head_dim, rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta,
        sliding_window=cfg.sliding_window, max_position_embeddings=cfg.max_seq_len, tie_word_embeddings=False,
        hidden_act="silu", attention_dropout=0.0, initializer_range=0.02, use_cache=True,
        bos_token_id=1, eos_token_id=2, pad_token_id=None, attn_implementation=attn_implementation)


@torch.no_grad()
def randomize_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every weight random, norms included (all-ones norms would hide a swapped attention_norm/ffn_norm).

    Matrices get std 1/sqrt(fan_in), so activations and logits stay O(1) and greedy decoding varies.
    """
    generator = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if p.dim() == 1:
            p.copy_(1 + 0.2 * torch.randn(p.shape, generator=generator))
        elif "embed" in name:
            p.copy_(torch.randn(p.shape, generator=generator))
        else:
            p.copy_(torch.randn(p.shape, generator=generator) / math.sqrt(p.shape[1]))
    return model


@pytest.fixture
def make_hf_checkpoint(tmp_path_factory):
    """make(cfg, attn_implementation="eager", seed=0) -> (HF MistralForCausalLM, folder it was saved to)."""
    def make(cfg: me.ModelConfig, attn_implementation: str = "eager", seed: int = 0):
        from transformers import MistralForCausalLM
        torch.manual_seed(seed)
        hf = randomize_(MistralForCausalLM(hf_config(cfg, attn_implementation)), seed).eval()
        folder = tmp_path_factory.mktemp("hf")
        hf.save_pretrained(folder, safe_serialization=True)
        return hf, folder
    return make


@pytest.fixture
def make_consolidated_checkpoint(tmp_path_factory):
    """make(cfg, seed=0, dtype=torch.float32) -> (our random Transformer, folder in Mistral's layout)."""
    def make(cfg: me.ModelConfig, seed: int = 0, dtype=torch.float32):
        model = randomize_(me.Transformer(cfg), seed).eval()
        folder = tmp_path_factory.mktemp("consolidated")
        me.save_consolidated(model, folder, dtype=dtype)
        return model, folder
    return make


@pytest.fixture(scope="session")
def tokenizer() -> me.Tokenizer:
    """mistral-common's v1 tokenizer, named explicitly so no weights on this machine change it."""
    return me.load_tokenizer(mistral_common_v1_path())


@pytest.fixture
def no_weights_anywhere(monkeypatch, tmp_path):
    """Hide $MISTRAL_EDU_WEIGHTS and every Hugging Face cache, so load_model() falls through to the default."""
    for var in ("MISTRAL_EDU_WEIGHTS", "HF_HOME", "HF_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.fixture(scope="module")
def one_thread():
    """Two threads on a shared 2-core machine run 10x slower than one; restore the setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def block_outside_requests(page, allowed: str) -> list[str]:
    """Abort every request of a Playwright page whose URL does not start with `allowed`; the returned list fills
    with the blocked URLs, so a browser test can assert that a page asked for nothing outside (no CDN, no network)."""
    blocked = []

    def route(r):
        if r.request.url.startswith(allowed):
            return r.continue_()
        blocked.append(r.request.url)
        return r.abort()
    page.route("**/*", route)
    return blocked
