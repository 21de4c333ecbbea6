"""GPU speed: the full Mistral-7B-Instruct-v0.2 shape, random bf16 weights, ours against transformers.

    PYTHONPATH=. python benchmarks/cuda_speed.py            # on a CUDA GPU; ~3-5 minutes on an H100
    PYTHONPATH=. python benchmarks/cuda_speed.py --smoke    # a tiny model, every section, on CPU or GPU

Weight values do not change speed or memory, so they are drawn directly on the GPU (no download); both
models share them (reference_model.py). In one run:
  - memory bandwidth (a device-to-device copy, bytes read + written) and the decode floor it implies,
    weight bytes / bandwidth: reading every weight once per token is the least a decode step must do;
  - decode tokens/s at batch 1, greedy, after a 128-token prompt: ours without a graph, with a CUDA
    graph, with the graph and torch.compile fusion; transformers eager and sdpa with its dynamic cache,
    and sdpa with cache_implementation="static" (which makes transformers torch.compile its step);
    the compile times of both;
  - prefill tokens/s and peak memory above the weights (KV cache included) at 512, 4k and 32k tokens.
Every section catches its own failure, prints it, and the run goes on. The table comes last; a full
(not --smoke) run saves it as benchmarks/results/cuda_speed.json (results.py), which the README and
notebook 07 quote.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mistral_edu as me  # noqa: E402
from mistral_edu.generation import FastDecoder, fast_path, fuse_projections  # noqa: E402
from mistral_edu.model import random_init_  # noqa: E402
from reference_model import set_attention, transformers_twin  # noqa: E402
from results import save  # noqa: E402

GiB = 2**30
START = time.perf_counter()


class Settings:
    """What one run measures; --smoke shrinks everything so the code paths can be checked anywhere."""

    def __init__(self, smoke: bool, device: str):
        self.device = torch.device(device)
        self.smoke = smoke
        if smoke:
            self.cfg = me.ModelConfig(dim=64, n_layers=2, head_dim=16, hidden_dim=160, n_heads=4, n_kv_heads=2,
                                      vocab_size=512, max_seq_len=4096)
            self.dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
            self.prompt, self.new_tokens, self.repeats = 16, 16, 2
            self.contexts = (64, 512, 3000)
            self.copy_bytes = 64 * 2**20
        else:
            self.cfg = me.ModelConfig.mistral_7b_instruct_v02()
            self.dtype = torch.bfloat16
            self.prompt, self.new_tokens, self.repeats = 128, 128, 3
            self.contexts = (512, 4096, 32768)
            self.copy_bytes = 2 * GiB
        self.budget_s = 330   # stop starting optional sections after this, to finish in ~6 minutes


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def elapsed() -> float:
    return time.perf_counter() - START


def log(msg: str) -> None:
    print(f"[{elapsed():6.1f}s] {msg}", flush=True)


def section(name: str, fn, *args):
    """Run one part; on failure print why and return None, so the other parts still run."""
    log(f"-- {name}")
    try:
        return fn(*args)
    except Exception as error:  # noqa: BLE001 (a benchmark reports every failure and carries on)
        log(f"!! {name} failed: {type(error).__name__}: {error}")
        traceback.print_exc(limit=4)
        return None


def run_if_time(s: Settings, results: dict, key, name: str, fn, *args) -> None:
    """results[key] = section(name, ...), unless the run is already past its time budget."""
    if elapsed() > s.budget_s:
        log(f"skipped (time budget): {name}")
        return
    results[key] = section(name, fn, *args)


def timed(fn, device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- sections

def environment(s: Settings) -> str:
    import importlib.util

    import transformers
    gpu = torch.cuda.get_device_name() if s.device.type == "cuda" else "no GPU (CPU run)"
    if s.device.type == "cuda":
        gpu += f", {torch.cuda.get_device_properties(0).total_memory / GiB:.1f} GiB"
    line = (f"{gpu}; torch {torch.__version__} (CUDA {torch.version.cuda}), transformers {transformers.__version__}, "
            f"mistral_common {'installed' if importlib.util.find_spec('mistral_common') else 'not installed'}")
    log(line)
    return line


def bandwidth(s: Settings) -> float:
    """Bytes per second of a large device-to-device copy, counting bytes read plus bytes written."""
    n = s.copy_bytes // 2
    src = torch.empty(n, dtype=torch.bfloat16, device=s.device).normal_()
    dst = torch.empty_like(src)
    times = [timed(lambda: dst.copy_(src), s.device) for _ in range(25)][5:]
    rate = 2 * n * 2 / statistics.median(times)
    log(f"copy of {2 * n / GiB:.2f} GiB: {rate / 1e12:.3f} TB/s (read + write)")
    return rate


@torch.no_grad()
def build_models(s: Settings):
    """Our Transformer with random weights made on the device, its wq|wk|wv and w1|w3 fused, and an HF twin."""
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(s.dtype)
    try:
        with torch.device(s.device):
            model = me.Transformer(s.cfg)
    finally:
        torch.set_default_dtype(default)
    model = random_init_(model, seed=0).eval().requires_grad_(False)
    fuse_projections(model)   # before the twin shares the storage (fusing moves it)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    hf = transformers_twin(model, "sdpa")
    log(f"weights: {weight_bytes / 1e9:.3f} GB ours; device memory in use with the twin: "
        f"{torch.cuda.memory_allocated() / 1e9 if s.device.type == 'cuda' else float('nan'):.2f} GB")
    return model, hf, weight_bytes


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@torch.no_grad()
def agreement(s: Settings, model, hf) -> dict:
    """The three implementations compute one function: relative logit errors on a fresh prompt."""
    ids = torch.randint(3, s.cfg.vocab_size, (1, 64), device=s.device)
    reference = hf(ids, use_cache=False).logits[0, -1].float()
    slots = fast_path.SLOT_ROUNDING   # what the decode runs use, so compile sees the same shapes
    decoder = FastDecoder(model, slots, use_graph=False, use_compile=False)
    ours = decoder.prefill(ids)[0]
    errors = {"prefill ours vs transformers": relative_error(ours, reference),
              "forward ours vs transformers": relative_error(model(ids, last_only=True)[0, -1], reference)}
    token = int(ours.argmax())
    eager_next = decoder.decode(token)[0].clone()
    expected_next = hf(torch.cat([ids, torch.tensor([[token]], device=s.device)], 1), use_cache=False).logits[0, -1]
    errors["decode step ours vs transformers"] = relative_error(eager_next, expected_next.float())
    first_step = {}
    if s.device.type == "cuda":
        for use_compile in (False, True):
            name = "CUDA graph" + (" + torch.compile" if use_compile else "")
            graphed = FastDecoder(model, slots, use_graph=True, use_compile=use_compile)
            graphed.prefill(ids)
            first_step[name] = timed(lambda: graphed.decode(token), s.device)
            errors[f"{name} step vs eager step"] = relative_error(graphed.logits[0], eager_next)
            log(f"{name}: first decode step (warm-up, {'compile, ' if use_compile else ''}capture) "
                f"{first_step[name]:.1f} s")
            del graphed
    for name, value in errors.items():
        log(f"relative error, {name}: {value:.2e}")
    return errors, first_step


def flash_check(s: Settings) -> None:
    """Whether SDPA can take its flash kernel for a prefill chunk (else memory grows with the prompt)."""
    from torch.backends.cuda import SDPAParams, can_use_flash_attention
    cfg = s.cfg
    q = torch.empty(1, cfg.n_heads, 2048, cfg.head_dim, device=s.device, dtype=s.dtype)
    kv = torch.empty(1, cfg.n_kv_heads, 4096, cfg.head_dim, device=s.device, dtype=s.dtype)
    log(f"flash attention usable for a 2048-token chunk over 4096 keys with GQA: "
        f"{can_use_flash_attention(SDPAParams(q, kv, kv, None, 0.0, False, True), True)}")


@torch.no_grad()
def decode_ours(s: Settings, model, use_graph: bool, use_compile: bool) -> dict:
    """Greedy decode with one decoder kept across runs; the first run also pays graph capture (and compile)."""
    prompt = torch.randint(3, s.cfg.vocab_size, (1, s.prompt), device=s.device)
    decoder = FastDecoder.sized_for(model, s.prompt + s.new_tokens + 1, use_graph=use_graph, use_compile=use_compile)

    def run():
        logits = decoder.prefill(prompt)
        sync(s.device)
        start = time.perf_counter()
        for _ in range(s.new_tokens):
            logits = decoder.decode(int(logits.argmax(-1)))
        sync(s.device)
        return time.perf_counter() - start

    first = run()
    times = [run() for _ in range(s.repeats)]
    per_token = statistics.median(times) / s.new_tokens
    ran = f"graph={decoder.use_graph} compile={decoder.compiled}"   # a failed capture/compile falls back
    result = {"tok_s": 1 / per_token, "first_run_s": first, "steady_run_s": statistics.median(times),
              "note": "" if ran == f"graph={use_graph} compile={use_compile}" else f" (FELL BACK: ran {ran})"}
    log(f"ours graph={use_graph} compile={use_compile}: {result['tok_s']:.1f} tok/s; first run {first:.2f} s "
        f"(capture/compile), then {result['steady_run_s']:.2f} s; ran {ran}")
    return result


@torch.no_grad()
def decode_ours_generate(s: Settings, model, fast: bool, keep_decoder: bool = False) -> dict:
    """me.generate end to end (fast=True: its default mode), decode rate from t(n+2 new) - t(2 new).

    Without a kept decoder each call builds one and, on a GPU, captures its graph at the first decode
    step; two new tokens (one decode step) put that setup in both timings, so it cancels out, and the
    per-call setup shows as the difference between the two rows of generate.
    """
    ids = torch.randint(3, s.cfg.vocab_size, (s.prompt,)).tolist()
    decoder = FastDecoder.sized_for(model, s.prompt + s.new_tokens + 2) if keep_decoder else None
    one = lambda: me.generate(model, ids, 2, stop_at_eos=False, fast=fast, decoder=decoder)                  # noqa: E731
    full = lambda: me.generate(model, ids, s.new_tokens + 2, stop_at_eos=False, fast=fast, decoder=decoder)  # noqa: E731
    repeats = s.repeats if fast else 1
    first = timed(full, s.device)
    t_full = statistics.median(timed(full, s.device) for _ in range(repeats))
    t_one = statistics.median(timed(one, s.device) for _ in range(repeats))
    ran = f" (ran graph={decoder.use_graph} compile={decoder.compiled})" if decoder else ""
    result = {"tok_s": s.new_tokens / (t_full - t_one), "first_run_s": first, "steady_run_s": t_full,
              "per_call_s": t_one, "note": ran}
    log(f"me.generate(fast={fast}{', kept decoder' if decoder else ''}): {result['tok_s']:.1f} tok/s, "
        f"first call {first:.2f} s, a 2-token call {t_one:.3f} s{ran}")
    return result


@torch.no_grad()
def decode_transformers(s: Settings, hf, attention: str, static: bool) -> dict:
    """transformers' generate: decode rate from t(n+1 new) - t(1 new); static runs all long calls first.

    With cache_implementation="static" transformers compiles the decode step on the first long call; the
    one-token calls never run that step, so they cannot trigger a recompile between the timed runs.
    """
    set_attention(hf, attention)
    prompt = torch.randint(3, s.cfg.vocab_size, (1, s.prompt), device=s.device)
    extra = {"cache_implementation": "static"} if static else {}

    def gen(n):
        return lambda: hf.generate(prompt, max_new_tokens=n, do_sample=False, **extra)   # no EOS: always n

    if static:
        first = timed(gen(s.new_tokens + 1), s.device)
        t_full = statistics.median(timed(gen(s.new_tokens + 1), s.device) for _ in range(s.repeats))
    else:
        first = timed(gen(16), s.device)   # warm-up: kernels chosen, allocator primed
        t_full = statistics.median(timed(gen(s.new_tokens + 1), s.device) for _ in range(max(2, s.repeats - 1)))
    t_one = statistics.median(timed(gen(1), s.device) for _ in range(s.repeats))
    result = {"tok_s": s.new_tokens / (t_full - t_one), "first_run_s": first, "steady_run_s": t_full}
    log(f"transformers {attention}{' static' if static else ''}: {result['tok_s']:.1f} tok/s; first call {first:.2f} s")
    return result


@torch.no_grad()
def prefill_ours(s: Settings, model, context: int) -> dict:
    ids = torch.randint(3, s.cfg.vocab_size, (1, context), device=s.device)
    base = reset_peak(s.device)
    decoder = FastDecoder(model, context, use_graph=False, use_compile=False)
    first = timed(lambda: decoder.prefill(ids), s.device)
    peak = peak_above(s.device, base)
    seconds = statistics.median(timed(lambda: decoder.prefill(ids), s.device) for _ in range(s.repeats))
    kv = 2 * sum(k.numel() * k.element_size() for k in decoder.k)
    del decoder
    log(f"ours prefill {context}: {context / seconds:.0f} tok/s, peak above weights {peak / GiB:.2f} GiB "
        f"(KV cache {kv / GiB:.2f} GiB), first run {first:.2f} s")
    return {"tok_s": context / seconds, "peak": peak, "kv": kv}


@torch.no_grad()
def prefill_transformers(s: Settings, hf, context: int) -> dict:
    set_attention(hf, "sdpa")
    ids = torch.randint(3, s.cfg.vocab_size, (1, context), device=s.device)

    def run():
        out = hf(ids, use_cache=True, logits_to_keep=1)
        del out

    base = reset_peak(s.device)
    first = timed(run, s.device)
    peak = peak_above(s.device, base)
    seconds = statistics.median(timed(run, s.device) for _ in range(s.repeats))
    log(f"transformers sdpa prefill {context}: {context / seconds:.0f} tok/s, peak above weights {peak / GiB:.2f} GiB, "
        f"first run {first:.2f} s")
    return {"tok_s": context / seconds, "peak": peak}


def reset_peak(device) -> int:
    if device.type != "cuda":
        return 0
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def peak_above(device, base: int) -> float:
    return torch.cuda.max_memory_allocated() - base if device.type == "cuda" else math.nan


# ----------------------------------------------------------------------------- the run

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a tiny model: check every code path quickly")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    args = parser.parse_args()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu" and not args.smoke:
        sys.exit("no CUDA GPU: the full 7B shape is for a GPU; run with --smoke to check the code paths on CPU")
    s = Settings(args.smoke, device)
    env = section("environment", environment, s) or "?"
    rate = section("bandwidth", bandwidth, s)
    built = section("build models", build_models, s)
    if built is None:
        sys.exit("could not build the models; nothing else to measure")
    model, hf, weight_bytes = built
    floor_s = weight_bytes / rate if rate else math.nan
    log(f"decode floor: {weight_bytes / 1e9:.2f} GB / {rate / 1e12 if rate else math.nan:.3f} TB/s = "
        f"{1e3 * floor_s:.2f} ms/token ({1 / floor_s:.0f} tok/s)")
    errors, first_step = section("agreement", agreement, s, model, hf) or ({}, {})
    if s.device.type == "cuda":
        section("flash check", flash_check, s)

    # The aims first (our modes, transformers' best, prefill memory), the slow dynamic-cache baselines last.
    decode, prefill = {}, {}
    cuda = s.device.type == "cuda"
    decodes = [("ours, no graph (static cache, fused matmuls)", decode_ours, (s, model, False, False)),
               ("ours, CUDA graph", decode_ours, (s, model, True, False)) if cuda else None,
               ("ours, CUDA graph + torch.compile fusion", decode_ours, (s, model, True, True)) if cuda else None,
               ("ours, me.generate() default", decode_ours_generate, (s, model, True)),
               ("ours, me.generate(decoder=kept)", decode_ours_generate, (s, model, True, True)),
               ("transformers sdpa, static cache, compiled", decode_transformers, (s, hf, "sdpa", True))]
    slow = [("transformers eager, dynamic cache", decode_transformers, (s, hf, "eager", False)),
            ("transformers sdpa, dynamic cache", decode_transformers, (s, hf, "sdpa", False)),
            ("ours, me.generate(fast=False): model.forward", decode_ours_generate, (s, model, False))]
    for name, fn, fn_args in filter(None, decodes):
        run_if_time(s, decode, name, f"decode: {name}", fn, *fn_args)
    for context in s.contexts:
        for who, fn, model_arg in (("ours", prefill_ours, model), ("transformers sdpa", prefill_transformers, hf)):
            run_if_time(s, prefill, (who, context), f"prefill {who} {context}", fn, s, model_arg, context)
    for name, fn, fn_args in slow:
        run_if_time(s, decode, name, f"decode: {name}", fn, *fn_args)

    print_table(s, env, rate, weight_bytes, floor_s, errors, first_step, decode, prefill)
    figures = results_figures(s, rate, weight_bytes, errors, first_step, decode, prefill) if rate else None
    if figures and not s.smoke:   # a smoke run builds the figures too (so that code is checked) but keeps them
        print("saved", save("cuda_speed", "benchmarks/cuda_speed.py", env.split(";")[0], figures,
                            libraries=("transformers",)))


def results_figures(s, rate, weight_bytes, errors, first_step, decode, prefill) -> dict:
    """The table as plain JSON: what render_results.py and notebook 07 read."""
    hf_static = decode.get("transformers sdpa, static cache, compiled")
    rows = {}
    for name, r in decode.items():
        if r is None:
            continue
        first = f"{r['first_run_s']:.1f} s, capture/compile included" + r.get("note", "")
        if r is hf_static:
            first = f"{hf_static['first_run_s'] - hf_static['steady_run_s']:.1f} s compile"
        rows[name] = {"tok_s": r["tok_s"], "first_run_s": r["first_run_s"], "first_call": first}
    return {"shape": "Mistral-7B-Instruct-v0.2", "dtype": str(s.dtype).replace("torch.", ""),
            "prompt_tokens": s.prompt, "new_tokens": s.new_tokens, "bandwidth_tb_s": rate / 1e12,
            "weight_gb": weight_bytes / 1e9, "relative_errors": errors, "first_decode_step_s": first_step,
            "decode": rows,
            "prefill": [{"who": who, "tokens": context, "tok_s": r["tok_s"], "peak_gib": r["peak"] / GiB}
                        for (who, context), r in prefill.items() if r is not None]}


def print_table(s, env, rate, weight_bytes, floor_s, errors, first_step, decode, prefill) -> None:
    shape = "Mistral-7B-Instruct-v0.2 shape" if not s.smoke else "SMOKE (tiny model: numbers mean nothing)"
    print(f"\n==== {shape}, random {str(s.dtype).replace('torch.', '')} weights, batch 1 — {env}")
    if rate:
        print(f"bandwidth {rate / 1e12:.3f} TB/s (copy, read + write); weights {weight_bytes / 1e9:.2f} GB; "
              f"decode floor {1e3 * floor_s:.2f} ms/token = {1 / floor_s:.0f} tok/s")
    for name, value in errors.items():
        print(f"relative error, {name}: {value:.1e}")
    best_hf = (decode.get("transformers sdpa, static cache, compiled") or {}).get("tok_s")
    print(f"\ndecode, greedy, {s.new_tokens} new tokens after a {s.prompt}-token prompt")
    print(f"{'':<48} {'tok/s':>8} {'ms/token':>9} {'% floor':>8} {'vs HF static':>13} {'first run s':>12}")
    for name, r in decode.items():
        if r is None:
            print(f"{name:<48} {'failed':>8}")
            continue
        ms = 1e3 / r["tok_s"]
        pct = 100 * floor_s * r["tok_s"] if rate else math.nan
        vs = f"{r['tok_s'] / best_hf:.2f}x" if best_hf else "n/a"
        print(f"{name:<48} {r['tok_s']:>8.1f} {ms:>9.2f} {pct:>7.0f}% {vs:>13} {r['first_run_s']:>12.1f}"
              f"{r.get('note', '')}")
    hf_static = decode.get("transformers sdpa, static cache, compiled")
    for name, seconds in first_step.items():
        print(f"ours, {name}: the first decode step (warm-up, capture, compile if any) took {seconds:.1f} s")
    if hf_static:
        print(f"transformers static compile, first call minus a steady call: "
              f"{hf_static['first_run_s'] - hf_static['steady_run_s']:.1f} s")
    print("\nprefill (one forward over the prompt into the KV cache, last-position logits only)")
    print(f"{'tokens':>7} {'ours tok/s':>11} {'ours peak GiB':>14} {'HF tok/s':>10} {'HF peak GiB':>12}   "
          "(peak: allocated above the weights, KV cache included)")
    for context in s.contexts:
        ours, theirs = prefill.get(("ours", context)), prefill.get(("transformers sdpa", context))
        cells = [f"{ours['tok_s']:>11.0f} {ours['peak'] / GiB:>14.2f}" if ours else f"{'failed/skipped':>26}",
                 f"{theirs['tok_s']:>10.0f} {theirs['peak'] / GiB:>12.2f}" if theirs else f"{'failed/skipped':>23}"]
        print(f"{context:>7} {cells[0]} {cells[1]}")
    print(f"total time {elapsed():.0f} s")


if __name__ == "__main__":
    main()
