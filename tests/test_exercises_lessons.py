"""The checkers of notebooks 00-05 accept right answers, reject the common wrong ones with the right
diagnosis, treat an unsolved stub (None) as "not solved yet", and never raise."""
import math

import pytest
import torch
import torch.nn.functional as F

import mistral_edu as me
from mistral_edu.exercises import Verdict, assert_close, check, check_function
from mistral_edu.exercises import lessons as L
from mistral_edu.memory import parameter_count

REAL = me.ModelConfig.mistral_7b_instruct_v02()


def verdict(capsys, checker, *args):
    """Run a checker; return (solved, printed text)."""
    result = checker(*args)
    assert isinstance(result, Verdict)
    return bool(result), capsys.readouterr().out


def not_solved(capsys, checker, *args, says=""):
    solved, out = verdict(capsys, checker, *args)
    assert not solved and out.startswith("not solved yet"), out
    assert "hint" in out and says in out, out


def solved(capsys, checker, *args):
    ok, out = verdict(capsys, checker, *args)
    assert ok and out.startswith("correct"), out


@pytest.fixture(scope="module")
def tok():
    return me.load_tokenizer()


# ------------------------------------------------------------------ the shared helpers

def test_check_reports_without_raising(capsys):
    not_solved(capsys, check, None, lambda a: None, "start here")
    not_solved(capsys, check, 3, lambda a: 1 / 0, "h", says="ZeroDivisionError")
    solved(capsys, check, 4, lambda a: None if a == 4 else "no", "h")


def test_check_function_stub_error_and_wrong_value(capsys):
    not_solved(capsys, check_function, lambda x: None, [((1,), 2)], "h")
    not_solved(capsys, check_function, lambda x: [][1], [((1,), 2)], "h", says="IndexError")
    not_solved(capsys, check_function, lambda x: torch.zeros(3), [((1,), torch.ones(2))], "h", says="shape")
    solved(capsys, check_function, lambda x: x + 1, [((1,), 2)], "h")


def test_verdict_shows_nothing_in_a_notebook_but_is_truthy():
    assert Verdict(True) and not Verdict(False)
    assert Verdict(True)._ipython_display_() is None


def test_assert_close_prints_or_raises(capsys):
    assert_close("same", torch.ones(3), torch.ones(3))
    assert "same: equal, max |diff| = " in capsys.readouterr().out
    with pytest.raises(AssertionError, match="differ"):
        assert_close("bug", torch.ones(3), torch.zeros(3))


# ------------------------------------------------------------------ 00

def test_weight_gib(capsys):
    right = parameter_count(REAL) * 2 / 2**30
    solved(capsys, L.check_weight_gib, right)
    not_solved(capsys, L.check_weight_gib, None)
    not_solved(capsys, L.check_weight_gib, parameter_count(REAL) * 2 / 1e9, says="GB")
    not_solved(capsys, L.check_weight_gib, right * 2, says="float32")


def test_tokens_that_fit(capsys):
    free = 24 * 2**30 - parameter_count(REAL) * 2
    solved(capsys, L.check_tokens_that_fit, free // (2 * 32 * 8 * 128 * 2))
    not_solved(capsys, L.check_tokens_that_fit, None)
    not_solved(capsys, L.check_tokens_that_fit, free // (32 * 8 * 128 * 2), says="both")
    not_solved(capsys, L.check_tokens_that_fit, free // (2 * 32 * 32 * 128 * 2), says="8 key/value heads")


# ------------------------------------------------------------------ 01

def test_chat_ids(capsys, tok):
    def by_hand(messages):
        system = messages[0]["content"] if messages[0]["role"] == "system" else None
        turns = messages[1:] if system else messages
        ids = [tok.bos_id]
        for i, m in enumerate(turns):
            if m["role"] == "user":
                content = f"{system}\n\n{m['content']}" if i == 0 and system else m["content"]
                ids += tok.encode(f"[INST] {content} [/INST]", bos=False)
            else:
                ids += tok.encode(m["content"], bos=False) + [tok.eos_id]
        return ids

    solved(capsys, L.check_chat_ids, by_hand, tok)
    not_solved(capsys, L.check_chat_ids, lambda m: None, tok)
    not_solved(capsys, L.check_chat_ids, lambda m: by_hand(m)[1:], tok, says="BOS")
    as_one_string = lambda m: tok.encode("".join(f"[INST] {x['content']} [/INST]" for x in m if x["role"] == "user"))
    not_solved(capsys, L.check_chat_ids, as_one_string, tok, says="first difference")
    not_solved(capsys, L.check_chat_ids, lambda m: 1 / 0, tok, says="ZeroDivisionError")


def test_bytes_to_text(capsys):
    solved(capsys, L.check_bytes_to_text, lambda p: bytes(int(x[3:5], 16) for x in p).decode("utf-8"))
    not_solved(capsys, L.check_bytes_to_text, lambda p: None)
    not_solved(capsys, L.check_bytes_to_text, lambda p: "".join(chr(int(x[3:5], 16)) for x in p))


# ------------------------------------------------------------------ 02

def test_rms_norm(capsys):
    def right(x, w, eps):
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).type_as(x) * w

    solved(capsys, L.check_rms_norm, right)
    solved(capsys, L.check_rms_norm, lambda x, w, e: torch.nn.functional.rms_norm(x, (x.shape[-1],), w, e))
    not_solved(capsys, L.check_rms_norm, lambda x, w, e: None)
    not_solved(capsys, L.check_rms_norm, lambda x, w, e: F.layer_norm(x, (x.shape[-1],), eps=e) * w, says="LayerNorm")
    not_solved(capsys, L.check_rms_norm, lambda x, w, e: right(x, torch.ones_like(w), e), says="gain")
    not_solved(capsys, L.check_rms_norm, lambda x, w, e: x / (x.pow(2).mean(-1, keepdim=True).sqrt() + e) * w)
    not_solved(capsys, L.check_rms_norm, lambda x, w, e: right(x, w, e).float(), says="bfloat16")


def test_normalized_length(capsys):
    solved(capsys, L.check_normalized_length, math.sqrt(REAL.dim))
    not_solved(capsys, L.check_normalized_length, None)
    not_solved(capsys, L.check_normalized_length, 1.0, says="root-mean-square")
    not_solved(capsys, L.check_normalized_length, 4096, says="squared")


# ------------------------------------------------------------------ 03

def test_rope_rotate_half(capsys):
    from mistral_edu.model import apply_rope, rope_rotations
    solved(capsys, L.check_rope_rotate_half, L.rope_rotate_half_reference)
    not_solved(capsys, L.check_rope_rotate_half, lambda x, p, t: None)
    interleaved = lambda x, p, t: apply_rope(x[None, :, None, :], rope_rotations(p, x.shape[-1], t))[0, :, 0]
    not_solved(capsys, L.check_rope_rotate_half, interleaved, says="interleaved")
    not_solved(capsys, L.check_rope_rotate_half, L._rope_no_minus, says="minus")
    not_solved(capsys, L.check_rope_rotate_half, lambda x, p, t: L.rope_rotate_half_reference(x, p, 1e4))


def test_wavelength(capsys):
    solved(capsys, L.check_wavelength, lambda i, d, t: 2 * math.pi * t ** (2 * i / d))
    not_solved(capsys, L.check_wavelength, lambda i, d, t: None)
    not_solved(capsys, L.check_wavelength, lambda i, d, t: t ** (2 * i / d), says="2 * pi")
    not_solved(capsys, L.check_wavelength, lambda i, d, t: t ** (-2 * i / d), says="frequency")
    not_solved(capsys, L.check_wavelength, lambda i, d, t: 2 * math.pi * t ** (i / d), says="exponent")


# ------------------------------------------------------------------ 04

def test_causal_attention(capsys):
    def right(q, k, v):
        s = q.shape[0]
        scores = (q @ k.T / math.sqrt(q.shape[-1])).masked_fill(torch.triu(torch.ones(s, s, dtype=torch.bool), 1), -math.inf)
        return torch.softmax(scores, -1) @ v

    solved(capsys, L.check_causal_attention, right)
    not_solved(capsys, L.check_causal_attention, lambda q, k, v: None)
    not_solved(capsys, L.check_causal_attention, lambda q, k, v: torch.softmax(q @ k.T / 4, -1) @ v, says="mask")
    unscaled = lambda q, k, v: right(q * math.sqrt(q.shape[-1]), k, v)
    not_solved(capsys, L.check_causal_attention, unscaled, says="sqrt")


def test_kv_cache_bytes(capsys):
    solved(capsys, L.check_kv_cache_bytes, lambda c, n, b: 2 * c.n_layers * c.n_kv_heads * c.head_dim * n * b)
    not_solved(capsys, L.check_kv_cache_bytes, lambda c, n, b: None)
    not_solved(capsys, L.check_kv_cache_bytes, lambda c, n, b: 2 * c.n_layers * c.n_heads * c.head_dim * n * b,
               says="n_kv_heads")
    not_solved(capsys, L.check_kv_cache_bytes, lambda c, n, b: c.n_layers * c.n_kv_heads * c.head_dim * n * b,
               says="AND values")
    not_solved(capsys, L.check_kv_cache_bytes, lambda c, n, b: 2 * c.n_kv_heads * c.head_dim * n * b, says="layer")


# ------------------------------------------------------------------ 05

def test_swiglu(capsys):
    solved(capsys, L.check_swiglu, lambda x, w1, w2, w3: (F.silu(x @ w1.T) * (x @ w3.T)) @ w2.T)
    not_solved(capsys, L.check_swiglu, lambda x, w1, w2, w3: None)
    not_solved(capsys, L.check_swiglu, lambda x, w1, w2, w3: (F.silu(x @ w3.T) * (x @ w1.T)) @ w2.T, says="swapped")
    not_solved(capsys, L.check_swiglu, lambda x, w1, w2, w3: (F.relu(x @ w1.T) * (x @ w3.T)) @ w2.T, says="ReLU")
    not_solved(capsys, L.check_swiglu, lambda x, w1, w2, w3: F.silu(x @ w1.T) @ w2.T, says="gating")


def test_block_parameters(capsys):
    right = lambda c: (c.dim * c.head_dim * (2 * c.n_heads + 2 * c.n_kv_heads) + 3 * c.dim * c.hidden_dim + 2 * c.dim)
    solved(capsys, L.check_block_parameters, right)
    assert right(REAL) * REAL.n_layers + 2 * REAL.vocab_size * REAL.dim + REAL.dim == parameter_count(REAL)
    not_solved(capsys, L.check_block_parameters, lambda c: None)
    not_solved(capsys, L.check_block_parameters, lambda c: right(c) - 2 * c.dim, says="norm")
    not_solved(capsys, L.check_block_parameters, lambda c: 4 * c.dim * c.n_heads * c.head_dim + 3 * c.dim * c.hidden_dim
               + 2 * c.dim, says="n_kv_heads")
    not_solved(capsys, L.check_block_parameters, lambda c: right(c) - c.dim * c.hidden_dim, says="three")
