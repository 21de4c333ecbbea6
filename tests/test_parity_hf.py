"""Parity with transformers' MistralForCausalLM on the same random weights, in float32.

The HF model is saved with save_pretrained (safetensors, rotate-half q/k rows) and loaded through
me.load_model, so these tests prove the loader (names, un-permutation, config reading) as much as
the model. A wrong q/k permutation is exact at position 0 (a query alone with its own key attends
to it with weight 1 whatever the rotation), so every comparison covers all positions, and the
negative tests show that getting the permutation wrong breaks positions > 0 only.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

import mistral_edu as me
from conftest import hf_config, small_config
from mistral_edu.checkpoints import layouts, permute_for_hf, unpermute_from_hf
from safetensors.torch import load_file

TOL = 1e-4


@pytest.fixture(autouse=True)
def seeded():
    """Every test here draws the same random numbers on every run."""
    torch.manual_seed(0)


CONFIGS = {
    # 1 query head per KV head (plain multi-head attention), theta 1e6.
    "gqa1": small_config(n_heads=4, n_kv_heads=4),
    # 2 per KV head, heads * head_dim (128) != dim (96): head_dim must come from the config.
    "gqa2": small_config(dim=96, n_heads=4, n_kv_heads=2, head_dim=32, hidden_dim=224, norm_eps=1e-6,
                         rope_theta=10000.0),
    # 4 per KV head, as in the 7B (and the embedded default), three layers.
    "gqa4": small_config(dim=128, n_layers=3, n_heads=8, n_kv_heads=2, head_dim=16, hidden_dim=448),
}


def max_diff_per_position(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """max |a - b| at each position, over batch and vocabulary: (seq,)."""
    return (a - b).abs().amax(dim=(0, 2))


def tokens(cfg: me.ModelConfig, batch: int, seq: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, cfg.vocab_size, (batch, seq), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_match_hf(name, attn_implementation, make_hf_checkpoint):
    cfg = CONFIGS[name]
    hf, folder = make_hf_checkpoint(cfg, attn_implementation)
    assert hf.config._attn_implementation == attn_implementation
    model = me.load_model(folder, device="cpu", dtype="fp32", verbose=False)
    assert model.cfg == cfg, "config.json must read back as the config the checkpoint was built from"
    for batch, seq in [(3, 7), (2, 33)]:
        x = tokens(cfg, batch, seq)
        with torch.no_grad():
            ours, theirs = model(x), hf(x).logits
        diff = max_diff_per_position(ours, theirs)
        print(f"{name} {attn_implementation} batch {batch} seq {seq}: max |diff| {diff.max():.2e}")
        assert diff.max() <= TOL, f"positions over tolerance: {torch.nonzero(diff > TOL).flatten().tolist()}"
        assert theirs.std() > 0.5, "logits too flat for the comparison to mean anything"


@pytest.mark.parametrize("strategy", ["full", "stream"])
def test_skipping_the_unpermutation_breaks_positions_after_the_first(make_hf_checkpoint, monkeypatch, strategy):
    """The loader and the streamer undo the permutation in one place: breaking it there breaks both."""
    cfg = CONFIGS["gqa4"]
    hf, folder = make_hf_checkpoint(cfg)
    monkeypatch.setattr(layouts, "unpermute_from_hf", lambda w, n_heads: w)
    wrong = me.load_model(folder, device="cpu", dtype="fp32", verbose=False, strategy=strategy)
    x = tokens(cfg, 2, 17)
    with torch.no_grad():
        diff = max_diff_per_position(wrong(x), hf(x).logits)
    assert diff[0] <= TOL, "position 0 cannot see the permutation"
    assert diff[1:].min() > 1e-2, "every later position must show the wrong RoPE pairing"


def test_unpermuting_wk_with_n_heads_instead_of_n_kv_heads_is_wrong(make_hf_checkpoint, monkeypatch):
    cfg = CONFIGS["gqa4"]
    hf, folder = make_hf_checkpoint(cfg)
    right = layouts.unpermute_from_hf
    monkeypatch.setattr(layouts, "unpermute_from_hf", lambda w, n: right(w, cfg.n_heads))
    wrong = me.load_model(folder, device="cpu", dtype="fp32", verbose=False)
    x = tokens(cfg, 1, 17)
    with torch.no_grad():
        diff = max_diff_per_position(wrong(x), hf(x).logits)
    assert diff[0] <= TOL and diff[1:].min() > 1e-2


def test_permutation_helpers_are_inverse_and_match_hf_rotate_half():
    """Our RoPE on unpermuted rows == HF's rotate_half RoPE on the HF rows, for any position."""
    from transformers.models.mistral.modeling_mistral import apply_rotary_pos_emb
    n_heads, head_dim, dim = 3, 8, 5
    w = torch.randn(n_heads * head_dim, dim)
    assert torch.equal(unpermute_from_hf(permute_for_hf(w, n_heads), n_heads), w)
    x = torch.randn(1, 4, dim)
    positions = torch.arange(4)
    ours = me.model.apply_rope((x @ w.T).view(1, 4, n_heads, head_dim),
                               me.model.rope_rotations(positions, head_dim, 1e4))     # (1, 4, heads, head_dim)
    hf_rows = permute_for_hf(w, n_heads)
    q = (x @ hf_rows.T).view(1, 4, n_heads, head_dim).transpose(1, 2)                # (1, heads, 4, head_dim)
    inv_freq = me.model.rope_inverse_frequencies(head_dim, 1e4)
    angles = torch.cat([torch.outer(positions.float(), inv_freq)] * 2, dim=-1)[None]  # (1, 4, head_dim)
    theirs, _ = apply_rotary_pos_emb(q, q, angles.cos(), angles.sin())
    # the two layouts order each head's dimensions differently: compare after mapping ours to HF's
    ours_in_hf_order = permute_for_hf(ours.reshape(4, -1).T, n_heads).T
    assert torch.allclose(ours_in_hf_order, theirs.transpose(1, 2).reshape(4, -1), atol=1e-5)


def test_consolidated_export_round_trips_exactly(make_hf_checkpoint, tmp_path):
    cfg = CONFIGS["gqa2"]
    _, folder = make_hf_checkpoint(cfg)
    model = me.load_model(folder, device="cpu", dtype="fp32", verbose=False)
    me.save_consolidated(model, tmp_path / "fp32", dtype=torch.float32)
    again = me.load_model(tmp_path / "fp32", device="cpu", dtype="fp32", verbose=False)
    assert again.checkpoint.layout == "mistral" and again.cfg == cfg
    ours, back = model.state_dict(), again.state_dict()
    assert list(back) == list(ours)
    assert all(torch.equal(back[k], ours[k]) for k in ours)
    # the file itself, read by the reference safetensors library: our names, our tensors
    stored = load_file(tmp_path / "fp32" / "consolidated.safetensors")
    assert set(stored) == set(ours) and all(torch.equal(stored[k], ours[k]) for k in ours)
    x = tokens(cfg, 2, 9)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


def test_bf16_export_is_what_mistral_ships(make_hf_checkpoint, tmp_path):
    _, folder = make_hf_checkpoint(CONFIGS["gqa1"])
    model = me.load_model(folder, device="cpu", dtype="fp32", verbose=False)
    me.save_consolidated(model, tmp_path)
    stored = load_file(tmp_path / "consolidated.safetensors")
    assert {t.dtype for t in stored.values()} == {torch.bfloat16}
    again = me.load_model(tmp_path, device="cpu", dtype="bf16", verbose=False)
    assert all(torch.equal(again.state_dict()[k], v.to(torch.bfloat16)) for k, v in model.state_dict().items())


# ----------------------------------------------------------------------------- generation


@pytest.mark.parametrize("window", [None, 8])
def test_greedy_generation_matches_hf_generate(window, make_hf_checkpoint):
    """Cached greedy decoding (plain and fast paths) == recomputing everything each step == HF's greedy."""
    cfg = small_config(dim=128, n_heads=8, n_kv_heads=2, head_dim=16, hidden_dim=448, sliding_window=window)
    hf, folder = make_hf_checkpoint(cfg, seed=3)
    model = me.load_model(folder, device="cpu", dtype="fp32", verbose=False)
    prompt = tokens(cfg, 1, 6, seed=4)[0].tolist()
    n_new = 40
    with torch.no_grad():
        out = hf.generate(torch.tensor([prompt]), max_new_tokens=n_new, do_sample=False,
                          eos_token_id=None, pad_token_id=0)
    theirs = out[0, len(prompt):].tolist()
    cached = me.generate(model, prompt, max_new_tokens=n_new, stop_at_eos=False, fast=False)
    fast = me.generate(model, prompt, max_new_tokens=n_new, stop_at_eos=False)
    recomputed = list(prompt)
    with torch.no_grad():
        for _ in range(n_new):
            recomputed.append(int(model(torch.tensor([recomputed]))[0, -1].argmax()))
    assert cached == fast == recomputed[len(prompt):] == theirs
    assert len(set(theirs)) > 5, "a degenerate repetition would prove little"


# ----------------------------------------------------------------------------- sliding window

WINDOWED = small_config(dim=128, n_heads=8, n_kv_heads=2, head_dim=16, hidden_dim=448, sliding_window=8)


def test_sliding_window_mask_is_hf_s():
    """Query p sees keys p - W < j <= p: W keys counting itself, as HF's sliding_window_overlay.

    mistral-inference's library agrees (xformers make_local_attention(W) keeps W keys, and its rolling
    cache holds W). The old one_file_ref.py prefill mask, triu(diagonal=-W), kept W + 1 keys, one
    more than its own W-slot rolling cache gives a decoded token: it is that file that is off by one.
    """
    from transformers.masking_utils import sliding_window_causal_mask_function
    window, n = 8, 20
    hf_mask = sliding_window_causal_mask_function(window)
    q, k = torch.arange(n)[:, None], torch.arange(n)[None, :]                             # (n, 1), (1, n)
    expected = hf_mask(0, 0, q, k)                                                      # (n, n)
    assert torch.equal(me.model.AttentionSpan(0, n, 0, n, window).mask(), expected)
    assert expected.sum(-1).max() == window


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_sliding_window_forward_matches_hf(attn_implementation, make_hf_checkpoint):
    hf, folder = make_hf_checkpoint(WINDOWED, attn_implementation)
    model = me.load_model(folder, device="cpu", dtype="fp32", verbose=False)
    x = tokens(WINDOWED, 2, 40)
    with torch.no_grad():
        ours, theirs = model(x), hf(x).logits
        unwindowed_model = me.Transformer(dataclasses.replace(WINDOWED, sliding_window=None))
        unwindowed_model.load_state_dict(model.state_dict())
        unwindowed = unwindowed_model(x)
    diff = max_diff_per_position(ours, theirs)
    print(f"sliding window 8, {attn_implementation}, 40 tokens: max |diff| {diff.max():.2e}")
    assert diff.max() <= TOL
    # the window must matter: same as full attention while it covers everything, different after
    effect = max_diff_per_position(ours, unwindowed)
    assert effect[:8].max() == 0 and effect[8:].min() > 1e-2


@pytest.mark.parametrize("chunks", [[5] + [1] * 35, [11, 3, 13, 13]])
def test_sliding_window_cache_across_the_window(chunks, make_hf_checkpoint):
    """Feeding 40 tokens through the rolling buffer (window 8) in pieces == HF's full forward."""
    hf, folder = make_hf_checkpoint(WINDOWED)
    model = me.load_model(folder, device="cpu", dtype="fp32", verbose=False)
    x = tokens(WINDOWED, 2, sum(chunks))
    cache = me.KVCache.for_model(model, batch=2, max_seq_len=40)
    assert cache.rolling and cache.k.shape[2] == 8, "the buffer holds the window, not the sequence"
    with torch.no_grad():
        pieces, start = [], 0
        for n in chunks:
            pieces.append(model(x[:, start:start + n], cache=cache))
            start += n
        theirs = hf(x).logits
    diff = max_diff_per_position(torch.cat(pieces, dim=1), theirs)
    assert diff.max() <= TOL


def test_rope_angles_match_hf_far_into_the_context():
    """Same cos/sin as HF's rotary embedding at the far end of the 32k context (float32 angles)."""
    from transformers.models.mistral.modeling_mistral import MistralRotaryEmbedding
    cfg = me.ModelConfig.mistral_7b_instruct_v02()
    positions = torch.tensor([0, 1, 7, 4095, 4096, 20000, 32767])
    rotary = MistralRotaryEmbedding(hf_config(small_config(head_dim=128, rope_theta=cfg.rope_theta)))
    cos, sin = rotary(torch.zeros(1, len(positions), 1), positions[None])             # (1, seq, head_dim)
    ours = me.model.rope_rotations(positions, cfg.head_dim, cfg.rope_theta)            # (seq, head_dim/2)
    half = cfg.head_dim // 2
    assert torch.allclose(cos[0, :, :half], ours.real, atol=1e-5)
    assert torch.allclose(sin[0, :, :half], ours.imag, atol=1e-5)
