"""The model's parts, each against its definition: names, RMSNorm, RoPE pairing, GQA, masks, both attention paths."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import mistral_edu as me
from conftest import randomize_, small_config
from mistral_edu.model import AttentionSpan, RMSNorm, apply_rope, random_init_, rope_rotations

LAYER_NAMES = ["attention_norm.weight", "attention.wq.weight", "attention.wk.weight", "attention.wv.weight",
               "attention.wo.weight", "ffn_norm.weight", "feed_forward.w1.weight", "feed_forward.w2.weight",
               "feed_forward.w3.weight"]


@pytest.fixture(autouse=True)
def seeded():
    """Every test here draws the same random numbers on every run."""
    torch.manual_seed(0)


def model_for(cfg, seed=0):
    return randomize_(me.Transformer(cfg), seed).eval()


def test_state_dict_names_are_the_consolidated_checkpoint_s():
    cfg = small_config(n_layers=2)
    names = list(me.Transformer(cfg).state_dict())
    assert names == (["tok_embeddings.weight"] + [f"layers.{i}.{n}" for i in range(2) for n in LAYER_NAMES]
                     + ["norm.weight", "output.weight"])


def test_the_7b_has_291_tensors_and_7_24b_parameters():
    cfg = me.ModelConfig.mistral_7b_instruct_v02()
    with torch.device("meta"):
        state = me.Transformer(cfg).state_dict()
    assert len(state) == 291
    assert sum(t.numel() for t in state.values()) == 7_241_732_096
    assert tuple(state["layers.0.attention.wk.weight"].shape) == (1024, 4096)
    assert tuple(state["layers.31.feed_forward.w2.weight"].shape) == (4096, 14336)
    assert tuple(state["output.weight"].shape) == (32000, 4096)


# ----------------------------------------------------------------------------- RMSNorm

def test_rmsnorm_is_the_formula():
    norm = RMSNorm(64, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(64))
    x = torch.randn(2, 5, 64) * 3
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * norm.weight
    assert torch.allclose(norm(x), expected, atol=1e-5)
    assert torch.allclose(norm(x), F.rms_norm(x, (64,), norm.weight, 1e-5), atol=1e-5)


def test_rmsnorm_takes_its_statistic_in_float32():
    """In bf16 the result is the float32 normalisation rounded once, then scaled: as the reference does."""
    norm = RMSNorm(4096, eps=1e-5).to(torch.bfloat16)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(4096))
    x = (torch.randn(3, 4096) * torch.logspace(-3, 3, 4096)).to(torch.bfloat16)
    x32 = x.float()
    expected = (x32 / torch.sqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-5)).to(torch.bfloat16) * norm.weight
    assert torch.equal(norm(x), expected)


# ----------------------------------------------------------------------------- RoPE

def test_rope_rotates_neighbouring_pairs_by_position_times_frequency():
    head_dim, theta, position = 8, 1e6, 5
    x = torch.randn(1, 1, 1, head_dim)
    rotated = apply_rope(x, rope_rotations(torch.tensor([position]), head_dim, theta))[0, 0, 0]
    for i in range(head_dim // 2):
        angle = position * theta ** (-2 * i / head_dim)
        a, b = x[0, 0, 0, 2 * i], x[0, 0, 0, 2 * i + 1]
        expected = torch.stack([a * math.cos(angle) - b * math.sin(angle), a * math.sin(angle) + b * math.cos(angle)])
        assert torch.allclose(rotated[2 * i:2 * i + 2], expected, atol=1e-5), f"pair {i}"


def test_rope_scores_depend_only_on_the_distance():
    head_dim = 16
    q, k = torch.randn(1, 1, 1, head_dim), torch.randn(1, 1, 1, head_dim)

    def score(m, n):
        rq = apply_rope(q, rope_rotations(torch.tensor([m]), head_dim, 1e4))
        rk = apply_rope(k, rope_rotations(torch.tensor([n]), head_dim, 1e4))
        return (rq * rk).sum()

    assert torch.allclose(score(7, 3), score(104, 100), atol=1e-4)
    assert not torch.allclose(score(7, 3), score(7, 4), atol=1e-3)


def test_rope_at_position_zero_is_the_identity():
    x = torch.randn(2, 1, 3, 16)
    assert torch.allclose(apply_rope(x, rope_rotations(torch.tensor([0]), 16, 1e6)), x)


# ----------------------------------------------------------------------------- attention

def test_query_head_h_reads_kv_head_h_over_n_rep():
    cfg = small_config(n_heads=8, n_kv_heads=2)  # n_rep 4: query heads 0-3 read KV head 0, 4-7 KV head 1
    model = model_for(cfg)
    with torch.no_grad():
        model.layers[0].attention.wv.weight[:cfg.head_dim] = 0  # KV head 0 carries no values
    seen = {}
    with model.hooks([("layers.0.attention.hook_z", lambda z, hook: seen.update(z=z))]):
        model(torch.randint(0, cfg.vocab_size, (1, 6)))
    per_head = seen["z"].abs().amax(dim=(0, 1, 3))  # (n_heads,)
    assert per_head[:4].max() == 0 and per_head[4:].min() > 0


def test_causal_mask_and_sliding_window_span():
    mask = AttentionSpan(0, 6, 0, 6).mask()
    assert torch.equal(mask, torch.ones(6, 6, dtype=torch.bool).tril())
    banded = AttentionSpan(0, 6, 0, 6, window=3).mask()
    assert banded.sum(-1).tolist() == [1, 2, 3, 3, 3, 3]
    assert torch.equal(banded, torch.ones(6, 6, dtype=torch.bool).tril() & ~torch.ones(6, 6, dtype=torch.bool).tril(-3))
    # a decode step at position 10 with keys 7..10 cached in a rolling buffer of 4
    assert AttentionSpan(10, 1, 7, 4, window=4).mask().tolist() == [[True, True, True, True]]


def test_later_tokens_never_change_earlier_logits():
    cfg = small_config()
    model = model_for(cfg)
    x = torch.randint(0, cfg.vocab_size, (1, 12))
    y = x.clone()
    y[0, 7] = (y[0, 7] + 1) % cfg.vocab_size
    with torch.no_grad():
        a, b = model(x), model(y)
    assert torch.equal(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_batch_rows_are_independent_and_last_only_is_the_last_row():
    cfg = small_config()
    model = model_for(cfg)
    x = torch.randint(0, cfg.vocab_size, (3, 9))
    with torch.no_grad():
        full = model(x)
        alone = torch.cat([model(x[i:i + 1]) for i in range(3)])
        last = model(x, last_only=True)
    assert full.shape == (3, 9, cfg.vocab_size) and full.dtype == torch.float32
    assert torch.allclose(full, alone, atol=1e-5)
    assert last.shape == (3, 1, cfg.vocab_size) and torch.allclose(last, full[:, -1:], atol=1e-6)


def test_a_bf16_model_returns_float32_logits():
    model = model_for(small_config()).to(torch.bfloat16)
    assert model(torch.tensor([[1, 2, 3]])).dtype == torch.float32


# ----------------------------------------------------------------------------- SDPA path == explicit path

def explicit(model):
    """Force the explicit path: a hook that replaces the pattern, here by an equal copy, is honoured by it."""
    return model.hooks([(lambda name: name.endswith("hook_pattern"), lambda pattern, hook: pattern.clone())])


def run_in_pieces(model, x, pieces):
    cache = me.KVCache.for_model(model, batch=x.shape[0], max_seq_len=x.shape[1])
    out, start = [], 0
    for n in pieces:
        out.append(model(x[:, start:start + n], cache=cache))
        start += n
    return torch.cat(out, dim=1)


@pytest.mark.parametrize("window", [None, 8])
@pytest.mark.parametrize("pieces", [None, [5, 1, 1, 1, 17], [11, 3, 13, 13]])
def test_sdpa_path_equals_explicit_path(window, pieces):
    cfg = small_config(n_heads=8, n_kv_heads=2, sliding_window=window)
    model = model_for(cfg)
    x = torch.randint(0, cfg.vocab_size, (2, sum(pieces) if pieces else 40))
    calls = []
    with torch.no_grad():
        fused = model(x) if pieces is None else run_in_pieces(model, x, pieces)
        with explicit(model), model.hooks([("layers.0.attention.hook_pattern", lambda p, h: calls.append(p.shape))]):
            slow = model(x) if pieces is None else run_in_pieces(model, x, pieces)
        reference = model(x)
    assert calls, "the explicit path must have run"
    assert (fused - slow).abs().max() <= 1e-5
    assert (fused - reference).abs().max() <= 1e-4, "pieces through the cache == one full forward"


def test_the_explicit_pattern_is_a_distribution_over_visible_keys():
    cfg = small_config(sliding_window=4)
    model = model_for(cfg)
    _, cache = model.run_with_cache(torch.randint(0, cfg.vocab_size, (1, 10)), names=lambda n: "pattern" in n)
    pattern = cache["pattern", 1]                                               # (1, n_heads, 10, 10)
    assert torch.allclose(pattern.sum(-1), torch.ones(1, cfg.n_heads, 10))
    assert torch.equal(pattern[0, 0] > 0, AttentionSpan(0, 10, 0, 10, window=4).mask())


def test_return_hidden_is_the_final_norm_output_the_logits_are_made_from():
    model = model_for(small_config())
    x = torch.randint(0, 256, (2, 7))
    with torch.no_grad():
        hidden = model(x, return_hidden=True)                                    # (2, 7, dim)
        _, cache = model.run_with_cache(x, names=["norm.hook_normalized"])
        assert torch.equal(model.output(hidden).float(), model(x))
    assert torch.equal(hidden, cache["ln_final"])


def test_random_init_fills_a_to_empty_model_completely():
    cfg = small_config()
    with torch.device("meta"):
        skeleton = me.Transformer(cfg)
    model = random_init_(skeleton.to_empty(device="cpu"), seed=1, scale_residual_outputs=True)
    assert torch.equal(model.norm.weight, torch.ones(cfg.dim))
    assert abs(model.layers[0].attention.wq.weight.std().item() - 0.02) < 0.002
    assert abs(model.layers[0].feed_forward.w2.weight.std().item() - 0.02 / math.sqrt(2 * cfg.n_layers)) < 0.001
