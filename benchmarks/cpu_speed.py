"""CPU speed: our model against transformers' MistralForCausalLM on the same weights, in one run.

    python benchmarks/cpu_speed.py                 # all defaults: 1 thread, 5 repeats, wall clock
    python benchmarks/cpu_speed.py --clock cpu     # CPU time of this process, for a busy shared machine

Two shapes: the embedded default (whatever load_model() finds in mistral_edu/default/) and a mid-size
random model at 1/8 of the 7B's width. Measured: forward latency (all logits) at 128 and 1024 tokens,
greedy decode speed, 64 new tokens after a 128-token prompt, as 64 / (t(65 new) - t(1 new)) so the
prompt's prefill cancels out, and short calls, 8 new tokens after a 16-token prompt, timed whole (set-up
and prefill included: what a short call costs, which the decode rate cancels). Each number is the median of --repeats runs after one warm-up, ours and
theirs interleaved so that a change in machine load hits both. Ratios above 1 mean we are faster.
The table is saved as benchmarks/results/cpu_speed.json (results.py), which the README quotes.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mistral_edu as me  # noqa: E402
from mistral_edu.model import random_init_  # noqa: E402
from reference_model import transformers_twin  # noqa: E402
from results import processor, save  # noqa: E402

PROMPT, NEW_TOKENS = 128, 64
SHORT_PROMPT, SHORT_NEW_TOKENS = 16, 8


def mid_size_model() -> me.Transformer:
    """The 7B's proportions (4 query heads per KV head, FFN 3.5x, head_dim 128) at 1/8 of its width."""
    cfg = me.ModelConfig(dim=512, n_layers=8, head_dim=128, hidden_dim=1792, n_heads=4, n_kv_heads=1,
                         norm_eps=1e-5, vocab_size=32000, rope_theta=1e6, max_seq_len=32768)
    return random_init_(me.Transformer(cfg), seed=0).eval().requires_grad_(False)


def machine(threads: int) -> str:
    import transformers
    return (f"{processor(threads)}; torch {torch.__version__}, transformers {transformers.__version__}, "
            f"python {platform.python_version()}")


def interleaved_medians(runs: dict, repeats: int, clock) -> dict:
    """Median seconds of each function: one warm-up each, then `repeats` rounds taking turns."""
    for fn in runs.values():
        fn()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


@torch.no_grad()
def measure(label: str, model, repeats: int, clock) -> tuple[list[tuple], bool]:
    """The table's rows for one model, and whether our greedy tokens equal transformers'."""
    hf = transformers_twin(model, "sdpa")
    gen = torch.Generator().manual_seed(1)
    rows = []
    for seq in (128, 1024):
        ids = torch.randint(3, model.cfg.vocab_size, (1, seq), generator=gen)
        t = interleaved_medians({"ours": lambda: model(ids), "hf": lambda: hf(ids, use_cache=False).logits},
                                repeats, clock)
        rows.append((label, f"forward {seq} tokens (ms)", 1e3 * t["ours"], 1e3 * t["hf"], t["hf"] / t["ours"]))

    prompt = torch.randint(3, model.cfg.vocab_size, (1, PROMPT), generator=gen)
    ids = prompt[0].tolist()

    def ours(n, fast=True, short=False):
        return lambda: me.generate(model, ids[:SHORT_PROMPT] if short else ids, n, stop_at_eos=False, fast=fast)

    def theirs(n, tokens=prompt):
        return lambda: hf.generate(tokens, max_new_tokens=n, do_sample=False)

    t = interleaved_medians({"fast 1": ours(1), "fast n": ours(NEW_TOKENS + 1), "plain 1": ours(1, False),
                             "plain n": ours(NEW_TOKENS + 1, False), "hf 1": theirs(1), "hf n": theirs(NEW_TOKENS + 1)},
                            repeats, clock)
    rate = {k: NEW_TOKENS / (t[f"{k} n"] - t[f"{k} 1"]) for k in ("fast", "plain", "hf")}
    name = f"decode tok/s, {NEW_TOKENS} new after {PROMPT}"
    rows.append((label, name + " (generate)", rate["fast"], rate["hf"], rate["fast"] / rate["hf"]))
    rows.append((label, name + " (fast=False)", rate["plain"], rate["hf"], rate["plain"] / rate["hf"]))
    short = prompt[:, :SHORT_PROMPT]
    t = interleaved_medians({"fast": ours(SHORT_NEW_TOKENS, short=True), "plain": ours(SHORT_NEW_TOKENS, False, short=True),
                             "hf": theirs(SHORT_NEW_TOKENS, short)}, repeats, clock)
    name = f"short call ms/token, {SHORT_NEW_TOKENS} new after {SHORT_PROMPT}"
    rows.append((label, name + " (generate)", 1e3 * t["fast"] / SHORT_NEW_TOKENS, 1e3 * t["hf"] / SHORT_NEW_TOKENS,
                 t["hf"] / t["fast"]))
    rows.append((label, name + " (fast=False)", 1e3 * t["plain"] / SHORT_NEW_TOKENS, 1e3 * t["hf"] / SHORT_NEW_TOKENS,
                 t["hf"] / t["plain"]))
    same = (me.generate(model, ids, NEW_TOKENS, stop_at_eos=False)
            == hf.generate(prompt, max_new_tokens=NEW_TOKENS, do_sample=False)[0, PROMPT:].tolist())
    print(f"{label}: greedy tokens identical to transformers' over {NEW_TOKENS} steps: {same}", flush=True)
    return rows, same


def print_table(rows, header: str) -> None:
    print(f"\n{header}")
    print(f"{'model':<26} {'measure':<46} {'ours':>10} {'transformers':>13} {'ours/theirs':>12}")
    for label, what, ours, theirs, ratio in rows:
        print(f"{label:<26} {what:<46} {ours:>10.2f} {theirs:>13.2f} {ratio:>11.2f}x")
    print("(forward and short calls: milliseconds, lower is better; decode: tokens/s, higher is better; "
          "ours/theirs > 1 means ours is faster)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: steadier numbers)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: time.perf_counter; cpu: this process's CPU time (busy shared machines)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    models = {"embedded default": me.load_model(device="cpu", verbose=False), "mid (dim 512, 8 layers)": mid_size_model()}
    rows, models_run = [], []
    for label, model in models.items():
        params = sum(p.numel() for p in model.parameters())
        print(f"{label}: {model.cfg}; {params / 1e6:.1f}M parameters, {model.dtype}", flush=True)
        model_rows, same = measure(label, model, args.repeats, clock)
        rows += model_rows
        models_run.append({"model": label, "parameters": params, "greedy_tokens_identical": same})
    print_table(rows, f"CPU, {args.clock} clock, median of {args.repeats}: {machine(args.threads)}")
    figures = {"clock": args.clock, "repeats": args.repeats, "threads": args.threads, "models": models_run,
               "rows": [{"model": label, "measure": what, "ours": ours, "transformers": theirs, "speedup": ratio}
                        for label, what, ours, theirs, ratio in rows]}
    print("saved", save("cpu_speed", "benchmarks/cpu_speed.py", processor(args.threads), figures, libraries=("transformers",)))


if __name__ == "__main__":
    main()
