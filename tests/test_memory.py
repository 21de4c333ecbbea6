"""The memory arithmetic against exact counts, allocated tensors, profiled peaks and published sizes."""
from __future__ import annotations

import matplotlib
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import mistral_edu as me
from mistral_edu import memory

matplotlib.use("Agg")

V02 = me.ModelConfig.mistral_7b_instruct_v02()


def test_exact_parameter_counts_of_v02():
    counts = memory.parameter_breakdown(V02)
    assert memory.parameter_count(V02) == sum(counts.values()) == 7_241_732_096
    assert counts["tok_embeddings"] == counts["output"] == 32000 * 4096
    assert counts["attention.wq"] == counts["attention.wo"] == 32 * 4096 * 4096
    assert counts["attention.wk"] == counts["attention.wv"] == 32 * 1024 * 4096
    assert counts["feed_forward.w1"] == counts["feed_forward.w2"] == counts["feed_forward.w3"] == 32 * 14336 * 4096
    assert counts["norms"] == 65 * 4096
    assert memory.weight_bytes(V02, "bf16") == 14_483_464_192
    assert memory.weight_bytes(V02, "fp32") == 2 * memory.weight_bytes(V02, "fp16")


def test_tensor_shapes_match_the_model():
    for cfg in (V02, me.ModelConfig.tiny()):
        with torch.device("meta"):
            model = me.Transformer(cfg)
        assert memory.tensor_shapes(cfg) == {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _tensor_bytes(model) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


@pytest.mark.parametrize("dtype,fmt", [("fp32", "fp32"), ("bf16", "bf16"), ("fp16", "fp16")])
def test_weight_bytes_equal_the_loaded_tensors(dtype, fmt):
    model = me.load_model(device="cpu", dtype=dtype, verbose=False)
    assert _tensor_bytes(model) == memory.weight_bytes(model.cfg, fmt)


def test_int8_weight_bytes_equal_the_quantised_tensors():
    model = me.load_model(device="cpu", dtype="bf16", strategy="int8", verbose=False)
    assert _tensor_bytes(model) == memory.weight_bytes(model.cfg, "int8") \
        == memory.strategy_weight_bytes(model.cfg, "int8", "bf16")


@pytest.mark.parametrize("cfg,context,batch,dtype", [
    (me.ModelConfig.tiny(), 100, 1, torch.float32),
    (me.ModelConfig.tiny(), 37, 3, torch.bfloat16),
    (me.ModelConfig(dim=128, n_layers=2, head_dim=16, hidden_dim=448, n_heads=8, n_kv_heads=2,
                    vocab_size=1000, sliding_window=64), 100, 2, torch.float16),
])
def test_kv_bytes_equal_the_cache_tensors(cfg, context, batch, dtype):
    cache = me.KVCache(cfg, batch, context, dtype=dtype)
    assert cache.k.numel() * cache.k.element_size() + cache.v.numel() * cache.v.element_size() \
        == memory.kv_cache_bytes(cfg, context, batch, dtype)


def test_kv_per_token_of_v02_and_without_gqa():
    assert memory.kv_bytes_per_token(V02, "bf16") == 128 * 1024
    assert memory.kv_bytes_per_token(V02, "bf16", gqa=False) == 512 * 1024
    assert memory.kv_cache_bytes(V02, 32768, 1, "bf16") == 4 * 2**30
    assert memory.kv_cache_bytes(V02, 32768, 1, "fp8") == 2 * 2**30


def test_every_gguf_file_type_has_a_published_size_and_a_format():
    assert set(memory.PUBLISHED_GGUF_GB) == set(memory.GGUF_FILE_TYPES)
    assert {f"gguf-{t.lower()}" for t in memory.GGUF_FILE_TYPES} <= set(memory.WEIGHT_FORMATS)


@pytest.mark.parametrize("file_type", sorted(memory.PUBLISHED_GGUF_GB))
def test_gguf_sizes_match_the_published_ones_to_their_rounding(file_type):
    """Hugging Face rounds to 0.01 GB, so the tensors' bytes must land within half of that."""
    predicted = memory.weight_bytes(V02, file_type) / 1e9
    published = memory.PUBLISHED_GGUF_GB[file_type]
    assert abs(predicted - published) < 0.005, (file_type, predicted, published)


def test_k_quant_mix_gives_half_the_v_and_down_matrices_q6k():
    counts = memory.gguf_type_counts(V02, "Q4_K_M")
    upgraded = 16 * (1024 * 4096 + 4096 * 14336) + 32000 * 4096  # 16 of 32 layers' wv and w2, and output
    assert counts["Q6_K"] == upgraded
    assert counts["F32"] == 65 * 4096


def _types(file_type: str, part: str) -> list[str]:
    """The ggml type of one component in each of the 32 layers."""
    shapes = memory.tensor_shapes(V02)
    return [memory.gguf_tensor_type(file_type, f"layers.{i}.{part}.weight", shapes[f"layers.{i}.{part}.weight"], V02)
            for i in range(V02.n_layers)]


def test_low_bit_mixes_follow_llama_cpp_rules_per_tensor():
    # Q2_K: attn_v Q4_K (GQA with 4 query heads per KV head), ffn_down and attn_output Q3_K, the rest Q2_K.
    assert _types("Q2_K", "attention.wv") == ["Q4_K"] * 32
    assert _types("Q2_K", "feed_forward.w2") == _types("Q2_K", "attention.wo") == ["Q3_K"] * 32
    assert _types("Q2_K", "attention.wq") == _types("Q2_K", "feed_forward.w1") == ["Q2_K"] * 32
    # Q3_K_M: the first two attn_v and ffn_down (n_layers / 16) Q5_K, the others Q4_K; attn_output Q4_K.
    assert _types("Q3_K_M", "attention.wv") == _types("Q3_K_M", "feed_forward.w2") == ["Q5_K"] * 2 + ["Q4_K"] * 30
    assert _types("Q3_K_M", "attention.wo") == ["Q4_K"] * 32
    assert _types("Q3_K_L", "attention.wv") == _types("Q3_K_L", "attention.wo") == ["Q5_K"] * 32
    assert _types("Q3_K_S", "feed_forward.w2") == ["Q3_K"] * 32
    # Q4_K_S: the first four attn_v and the first eighth of ffn_down Q5_K.
    assert _types("Q4_K_S", "attention.wv") == _types("Q4_K_S", "feed_forward.w2") == ["Q5_K"] * 4 + ["Q4_K"] * 28
    assert _types("Q5_K_S", "attention.wv") == ["Q5_K"] * 32 and _types("Q5_0", "feed_forward.w2") == ["Q5_0"] * 32
    for file_type in ("Q2_K", "Q3_K_S", "Q5_0"):
        assert memory.gguf_tensor_type(file_type, "output.weight", (32000, 4096), V02) == "Q6_K"
        assert memory.gguf_tensor_type(file_type, "tok_embeddings.weight", (32000, 4096), V02) \
            == memory.GGUF_FILE_TYPES[file_type]


def test_gguf_rows_that_are_not_whole_blocks_fall_back():
    cfg = me.ModelConfig.tiny()
    assert memory.gguf_tensor_type("Q3_K_M", "layers.0.attention.wq.weight", (64, 96), cfg) == "Q4_0"
    assert memory.gguf_tensor_type("Q4_K_M", "layers.0.attention.wq.weight", (64, 96), cfg) == "Q5_0"
    assert memory.gguf_tensor_type("Q5_0", "layers.0.attention.wq.weight", (64, 40), cfg) == "F16"
    with pytest.raises(ValueError, match="unknown GGUF file type"):
        memory.gguf_tensor_type("Q7_K", "output.weight", (64, 256), cfg)


def _peak_allocated(fn) -> int:
    """The CPU allocator's peak during fn, from the profiler's allocation and free events."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return peak


@pytest.mark.parametrize("dtype,context,attention,logits,vocab", [
    (torch.bfloat16, 512, "sdpa", "last", 1000),
    (torch.float32, 384, "sdpa", "last", 1000),
    (torch.bfloat16, 256, "sdpa", "all", 8000),
    (torch.float32, 256, "explicit", "last", 1000),
])
def test_activation_peak_matches_the_profiled_allocations(dtype, context, attention, logits, vocab):
    cfg = me.ModelConfig(dim=256, n_layers=2, head_dim=32, hidden_dim=896, n_heads=8, n_kv_heads=2,
                         vocab_size=vocab)
    model = me.Transformer(cfg).to(dtype).eval()
    tokens = torch.randint(0, vocab, (1, context))
    hooks = [(lambda n: n.endswith("hook_pattern"), lambda t, h: None)] if attention == "explicit" else []

    def prefill():
        cache = me.KVCache(cfg, 1, context, dtype=dtype)
        with torch.no_grad(), model.hooks(hooks):
            model(tokens, cache=cache, last_only=logits == "last")
        return cache

    kv = prefill().nbytes()
    measured = _peak_allocated(prefill) - kv
    predicted = memory.prefill_activation_bytes(cfg, context, 1, dtype, attention, logits)
    assert abs(predicted - measured) / measured < 0.03, (predicted, measured)


@pytest.mark.parametrize("dtype,context", [
    (torch.bfloat16, 256), (torch.bfloat16, 768), (torch.bfloat16, 2048),
    (torch.float32, 1024), (torch.float32, 2048),
])
def test_fast_path_peak_matches_the_profiled_allocations(monkeypatch, dtype, context):
    """generate's fast path, 256-token chunks here (PREFILL_CHUNK scaled down with the model): one chunk (256),
    several with the SwiGLU peak (768, float32 1024) and with the chunk-after-cache mask's peak (2048).

    Tolerance: 1% below the measurement, and above it the scratch of torch's CPU flash-attention kernel,
    which the model leaves out (its output staging and per-thread blocks, measured at 0.1-0.2 MB here);
    bounded by a float32 plus a compute-dtype copy of one chunk's attention output. For the 7B at 32k
    that bound is 6% of the predicted peak; for these small shapes it is 3-8% of the measurement."""
    from mistral_edu.generation import fast_path
    from mistral_edu.generation.fusion import fuse_projections
    chunk = 256
    monkeypatch.setattr(fast_path, "PREFILL_CHUNK", chunk)
    cfg = me.ModelConfig(dim=256, n_layers=2, head_dim=32, hidden_dim=896, n_heads=8, n_kv_heads=2,
                         vocab_size=1000)
    model = me.Transformer(cfg).to(dtype).eval()
    fuse_projections(model)
    tokens = torch.randint(0, cfg.vocab_size, (1, context))

    def prefill():
        fast_path.FastDecoder(model, context, copy_head=False).prefill(tokens)

    measured = _peak_allocated(prefill) - memory.kv_cache_bytes(cfg, context, 1, dtype)
    predicted = memory.prefill_activation_bytes(cfg, context, 1, dtype, path="fast", chunk=chunk)
    scratch = chunk * (4 + dtype.itemsize) * cfg.n_heads * cfg.head_dim
    assert -0.01 * measured <= measured - predicted <= scratch, (predicted, measured)
    if context > chunk:   # one pass over the same prompt holds more
        assert memory.prefill_activation_bytes(cfg, context, 1, dtype) > predicted


def test_each_path_and_its_errors():
    assert memory.prefill_path(V02, 4096) == "fast" and memory.prefill_path(V02, 4096, batch=2) == "plain"
    assert memory.prefill_path(V02, 4096, attention="explicit") == "plain"
    assert memory.prefill_path(me.ModelConfig.mistral_7b_v01(), 8192) == "plain"   # window 4096: one pass
    one_pass = memory.prefill_activation_bytes(V02, 32768, path="plain")
    chunked = memory.prefill_activation_bytes(V02, 32768, path="fast")
    assert chunked < one_pass / 4
    assert memory.estimate(V02, context=32768).path == "fast"
    assert memory.estimate(V02, context=32768, path="plain").parts["activations"] == one_pass
    with pytest.raises(ValueError, match="batch 2 runs as one pass"):
        memory.prefill_activation_bytes(V02, 4096, batch=2, path="fast")
    with pytest.raises(ValueError, match="explicit attention"):
        memory.prefill_activation_bytes(V02, 4096, attention="explicit", path="fast")
    with pytest.raises(ValueError, match="path must be"):
        memory.prefill_activation_bytes(V02, 4096, path="chunked")


def test_the_fit_check_plans_for_the_path_generate_takes(capsys):
    assert memory.strategy_path(V02, "full", 4096) == memory.strategy_path(V02, "int8", 4096) == "fast"
    assert memory.strategy_path(V02, "stream", 4096) == "plain"   # streamed weights are not resident
    assert memory.strategy_bytes(V02, "stream", "bf16", 32768)["activations"] == \
        memory.prefill_activation_bytes(V02, 32768, path="plain")
    assert memory.strategy_bytes(V02, "full", "bf16", 32768)["activations"] == \
        memory.prefill_activation_bytes(V02, 32768, path="fast")
    memory.choose_strategy(V02, "cpu", "bf16", "auto", free=12 * 10**9)
    assert "generate's fast path, 2,048 tokens at a time" in capsys.readouterr().out
    assert "one pass" in memory.strategy_reason(V02, "stream", "bf16", 3 * 10**9)


def test_estimate_table_and_chart():
    est = memory.estimate(V02, weights="bf16", context=32768)
    assert est.parts["weights"] == 14_483_464_192
    assert est.parts["KV cache"] == 4 * 2**30
    assert est.kv_no_gqa == 16 * 2**30
    assert est.total == sum(est.parts.values()) and est.total_with_overhead > est.total
    text = str(est)
    for word in ("weights", "KV cache", "without GQA", "activations", "fast path", "causal mask", "runtime overhead",
                 "total"):
        assert word in text   # at 32k the fast path peaks at its last chunk's mask, one pass in the SwiGLU
    assert "SwiGLU" in str(memory.estimate(V02, weights="bf16", context=32768, path="plain"))
    assert "<table>" in est._repr_html_()
    explicit = memory.estimate(V02, weights="q4_k_m", context=4096, attention="explicit", logits="all")
    assert "scores" in str(explicit) and explicit.parts["activations"] > 10 * est.parts["activations"] / 8 / 4


def test_four_bit_formats_are_a_bit_over_half_a_byte_per_weight():
    for fmt in ("int4-g128", "nf4"):
        blocks = sum(c for k, c in memory.parameter_breakdown(V02).items() if "." in k)
        rest = memory.parameter_count(V02) - blocks
        per_weight = (memory.weight_bytes(V02, fmt) - 2 * rest) / blocks
        assert 0.5 < per_weight < 0.53, (fmt, per_weight)


@pytest.mark.parametrize("kwargs,message", [
    (dict(context=0), "context"), (dict(context=-5), "context"), (dict(context=32769), "32768"),
    (dict(batch=0), "batch"), (dict(weights="q3_k_xl"), "unknown weight format"),
    (dict(cache_dtype="int3"), "unknown dtype"), (dict(attention="flash"), "attention"),
])
def test_bad_input_is_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        memory.estimate(V02, **kwargs)


def test_choose_strategy_and_refusals(capsys):
    gb = 10**9
    assert memory.choose_strategy(V02, "cpu", "bf16", "auto", free=20 * gb) == "full"
    assert memory.choose_strategy(V02, "cpu", "bf16", "auto", free=12 * gb) == "int8"
    assert "does not fit" in capsys.readouterr().out
    assert memory.choose_strategy(V02, "cpu", "bf16", "auto", free=3 * gb) == "stream"
    with pytest.raises(MemoryError, match=r"(?s)strategy .full. needs 15\.\d\d GB.*int8"):
        memory.choose_strategy(V02, "cpu", "bf16", "full", free=12 * gb)
    with pytest.raises(MemoryError, match="cannot fit on cpu in any way"):
        memory.choose_strategy(V02, "cpu", "bf16", "auto", free=gb // 10)
    with pytest.raises(ValueError, match="unknown strategy"):
        memory.choose_strategy(V02, "cpu", "bf16", "fastest", free=gb)


def test_load_model_refuses_before_allocating(tmp_path, monkeypatch):
    me.save_consolidated(me.load_model(device="cpu", verbose=False), tmp_path)
    monkeypatch.setattr(memory.fit, "free_memory", lambda device: (1000, "a test"))
    with pytest.raises(MemoryError, match="Nothing was loaded"):
        me.load_model(tmp_path, device="cpu", strategy="full", verbose=False)


def test_free_memory_of_the_cpu_is_positive():
    free, source = memory.free_memory("cpu")
    assert free > 0 and source


def _vram(capsys, *args):
    """Run `python -m mistral_edu vram ARGS` in this process: (exit code, stdout, stderr)."""
    from mistral_edu.__main__ import main
    code = main(["vram", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_vram_command_prints_every_format_and_the_breakdown(capsys):
    code, out, err = _vram(capsys)
    assert code == 0, err
    rows = [line.split() for line in out.splitlines() if line.split() and line.split()[0] in memory.WEIGHT_FORMATS]
    assert [(r[0], r[1]) for r in rows] == [(f, c) for f in memory.WEIGHT_FORMATS for c in ("1,024", "16,384", "32,768")]
    assert "without GQA" in out and "fast path" in out
    code, out, err = _vram(capsys, "--context", "2048", "--batch", "2", "--format", "Q4_K_M")
    assert code == 0, err
    rows = [line.split() for line in out.splitlines() if line.split() and line.split()[0] in memory.WEIGHT_FORMATS]
    assert [r[:2] for r in rows] == [["gguf-q4_k_m", "2,048"]]
    assert float(rows[0][5]) == pytest.approx(memory.estimate(V02, "Q4_K_M", 2048, 2).total / 1e9, abs=0.006)


@pytest.mark.parametrize("args,message", [
    (["--context", "0"], "context"), (["--context", "40000"], "32768"), (["--batch", "0"], "batch"),
    (["--format", "q9"], "unknown weight format"), (["--device", "cuda:7"], "cuda:7"),
])
def test_vram_command_bad_input(capsys, args, message):
    code, out, err = _vram(capsys, *args)
    assert code != 0 and message in err
