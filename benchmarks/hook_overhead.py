"""What idle hook points cost: the model as shipped vs the same forward with every HookPoint call bypassed.

A fair comparison needs the same weights, the same inputs and the same kernels on both sides, so the
bypassed side swaps in, per module instance, the same forward with its hook calls deleted
(`hook_points_bypassed` below): every module is still called through nn.Module.__call__, the inputs
are still checked, and the only difference left is the HookPoint calls. The script first checks both give bit-identical logits, then
times them alternately (A, B, A, B, ...) after a warm-up and compares medians, so drift in clock speed
or cache state hits both sides alike. Prefill and single-token decode (with the KV cache, where the
Python cost of a hook point weighs most) are timed separately.

    python benchmarks/hook_overhead.py                        # embedded default's shape, CPU
    python benchmarks/hook_overhead.py --config 7b --device cuda --dtype bfloat16   # real shape, random weights

The figures are saved as benchmarks/results/hook_overhead.json (results.py; hook_overhead_<config>_<device>.json
for other settings), which the README quotes.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import types
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mistral_edu as me  # noqa: E402
from mistral_edu.hooks import hook_points  # noqa: E402
from mistral_edu.model import (Attention, AttentionSpan, FeedForward, RMSNorm, TransformerBlock, apply_rope,  # noqa: E402
                               fused_attention, random_init_, rms_norm, rope_rotations, swiglu)
from results import save  # noqa: E402


def rms_norm_without_hooks(norm, x):
    return rms_norm(x, norm.weight, norm.eps)                                         # (batch, seq, dim)


def attention_without_hooks(attn, x, rotations, span, cache=None, layer=0):
    batch, seq, _ = x.shape
    q = attn.wq(x).view(batch, seq, attn.n_heads, attn.head_dim)                      # (batch, seq, n_heads, head_dim)
    k = attn.wk(x).view(batch, seq, attn.n_kv_heads, attn.head_dim)                   # (batch, seq, n_kv_heads, head_dim)
    v = attn.wv(x).view(batch, seq, attn.n_kv_heads, attn.head_dim)                   # (batch, seq, n_kv_heads, head_dim)
    q, k = apply_rope(q, rotations), apply_rope(k, rotations)
    if cache is not None:
        k, v = cache.update(layer, k, v)                                              # (batch, keys, n_kv_heads, head_dim)
    z = fused_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), span).transpose(1, 2)
    # z: (batch, seq, n_heads, head_dim)
    return attn.wo(z.reshape(batch, seq, attn.n_heads * attn.head_dim))              # (batch, seq, dim)


def feed_forward_without_hooks(ff, x):
    return ff.w2(swiglu(ff.w1(x), ff.w3(x)))                                         # (batch, seq, dim)


def block_without_hooks(block, x, rotations, span, cache=None):
    x = x + block.attention(block.attention_norm(x), rotations, span, cache, block.layer)  # (batch, seq, dim)
    return x + block.feed_forward(block.ffn_norm(x))                                  # (batch, seq, dim)


def transformer_without_hooks(model, tokens, cache=None, last_only=False):
    model.check_tokens(tokens, cache)
    seq = tokens.shape[1]
    span = AttentionSpan(0, seq, 0, seq, model.cfg.sliding_window) if cache is None else cache.span(seq)
    positions = torch.arange(span.q_start, span.q_start + seq, device=tokens.device)
    rotations = rope_rotations(positions, model.cfg.head_dim, model.cfg.rope_theta)  # (seq, head_dim/2)
    h = model.tok_embeddings(tokens)                                                  # (batch, seq, dim)
    for block in model.layers:
        h = block(h, rotations, span, cache)                                          # (batch, seq, dim)
    if cache is not None:
        cache.advance(seq)
    if last_only:
        h = h[:, -1:]                                                                 # (batch, 1, dim)
    return model.output(model.norm(h)).float()                                        # (batch, seq, vocab)


WITHOUT_HOOKS = {RMSNorm: rms_norm_without_hooks, Attention: attention_without_hooks,
                 FeedForward: feed_forward_without_hooks, TransformerBlock: block_without_hooks,
                 me.Transformer: transformer_without_hooks}


@contextmanager
def hook_points_bypassed(model):
    """Give each module, for the duration, its forward minus the HookPoint calls.

    The replacements are instance attributes, so every module is still called through
    nn.Module.__call__ exactly as in the shipped model: the only difference left is the hook points.
    """
    patched = [m for m in model.modules() if type(m) in WITHOUT_HOOKS]
    for module in patched:
        module.forward = types.MethodType(WITHOUT_HOOKS[type(module)], module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_alternately(fn_a, fn_b, device, repeats: int, warmup: int = 3) -> tuple[list[float], list[float]]:
    """Seconds per call of each, measured A, B, A, B, ... so both see the same machine state."""
    for _ in range(warmup):
        fn_a(), fn_b()
    times_a, times_b = [], []
    for _ in range(repeats):
        for fn, times in ((fn_a, times_a), (fn_b, times_b)):
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - start)
    return times_a, times_b


def idle_call_ns(calls: int = 200_000) -> float:
    """Nanoseconds one idle HookPoint call costs, net of the loop: the price per point per forward."""
    point, x = me.HookPoint(), torch.zeros(1)
    start = time.perf_counter()
    for _ in range(calls):
        point(x)
    hooked = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(calls):
        pass
    return (hooked - (time.perf_counter() - start)) / calls * 1e9


def decode_steps(forward, model, prompt, steps: int):
    """A function running `steps` single-token forwards after a prefilled prompt, restartable."""
    cache = me.KVCache.for_model(model, max_seq_len=prompt.shape[1] + steps)
    forward(model, prompt, cache)
    token = prompt[:, -1:]

    def run():
        cache.pos = prompt.shape[1]
        for _ in range(steps):
            forward(model, token, cache)
    return run


def device_name(device: torch.device, threads: int) -> str:
    """The processor (or GPU) the timings ran on, in words."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("model name")] if Path("/proc/cpuinfo").is_file() else []
    return f"{names[0] if names else platform.processor() or platform.machine()}; {threads} thread(s)"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", choices=["tiny", "7b"], default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--seq", type=int, default=128, help="prompt length for prefill")
    parser.add_argument("--decode-steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1 keeps a shared machine quiet)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = me.ModelConfig.tiny() if args.config == "tiny" else me.ModelConfig.mistral_7b_instruct_v02()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    with torch.device(device):
        model = random_init_(me.Transformer(cfg)).to(dtype).eval()
    prompt = torch.randint(0, cfg.vocab_size, (1, args.seq), device=device)
    n_points = len(hook_points(model))

    def hooked(m, t, cache=None):
        return m(t, cache=cache)

    def bypassed(m, t, cache=None):
        with hook_points_bypassed(m):
            return m(t, cache=cache)

    with torch.no_grad():
        same = torch.equal(hooked(model, prompt), bypassed(model, prompt))
        print(f"{args.config} on {device} in {dtype}: {n_points} idle hook points; "
              f"logits bit-identical to the bypassed forward: {same}")
        rows = [("prefill", f"1 x {args.seq} tokens",
                 time_alternately(lambda: hooked(model, prompt), lambda: bypassed(model, prompt),
                                  device, args.repeats)),
                ("decode", f"{args.decode_steps} steps after {args.seq}",
                 time_alternately(decode_steps(hooked, model, prompt, args.decode_steps),
                                  decode_steps(bypassed, model, prompt, args.decode_steps),
                                  device, args.repeats))]
    print(f"{'pass':8} {'work':24} {'statistic':9} {'hook points idle':>17} {'bypassed':>12} {'overhead':>9}")
    table = []
    for name, work, (with_points, without) in rows:
        for statistic, f in (("median", statistics.median), ("fastest", min)):
            a, b = f(with_points), f(without)
            print(f"{name:8} {work:24} {statistic:9} {a * 1e3:14.3f} ms {b * 1e3:9.3f} ms {100 * (a / b - 1):+8.2f}%")
            table.append({"pass": name, "work": work, "statistic": statistic, "hooked_ms": a * 1e3,
                          "bypassed_ms": b * 1e3, "overhead_percent": 100 * (a / b - 1)})
    print(f"({args.repeats} alternating runs each; on a busy machine 'fastest' is the least disturbed)")
    per_call = idle_call_ns()
    print(f"one idle hook point costs {per_call:.0f} ns; {n_points} per forward = {per_call * n_points / 1e3:.1f} us "
          f"per forward pass, whatever the sequence length")
    name = "hook_overhead" if (args.config, device.type) == ("tiny", "cpu") else f"hook_overhead_{args.config}_{device.type}"
    figures = {"config": args.config, "dtype": args.dtype, "repeats": args.repeats, "hook_points": n_points,
               "logits_bit_identical": same, "rows": table, "idle_hook_point_ns": per_call}
    print("saved", save(name, "benchmarks/hook_overhead.py", device_name(device, args.threads), figures))


if __name__ == "__main__":
    main()
