"""What a laptop can do: `generate` on the 7B shape on the CPU in bf16, int8 and streamed, in fresh processes.

    python benchmarks/cpu_laptop.py --dir /big/disk          # the 7B shape: a 14.5 GB checkpoint, ~16 GB of RAM
    python benchmarks/cpu_laptop.py --shape mid               # a 1.1 GB model of the same proportions, to try it
    python benchmarks/cpu_laptop.py --threads 4               # torch threads (default 1, as cpu_speed.py)

One thread by default: on a machine whose cores other work also uses, PyTorch's threads wait for each other
and a decode step can take several times longer with two threads than with one; one thread measures the
same thing in every run. On your own laptop, pass its number of cores.

Writes a synthetic checkpoint in Mistral's layout (random bf16 values, the exact names and shapes;
full_size_memory.py's writer), then measures each strategy in a new process, one after the other:
load_model's time and peak RSS, then greedy `generate` of --new-tokens tokens after a --prompt-tokens
prompt: the time to the first token (the prompt's prefill), the decode speed of the tokens after it,
and the peak RSS while generating (VmHWM, reset after loading through /proc/self/clear_refs). int8
runs --int8-runs times, each in a fresh process, because its peak once varied between runs.

In the same run, side by side: the 4096 -> 14336 matrix-vector product (bf16 F.linear, the int8
layer as it was before it used PyTorch's int8 kernel, and int8_linear now), and the logit error of
int8 against bf16 over the same tokens (the prompt and what bf16 generated): one decode step at a
time (int8 now: the int8 kernel's case), and in one forward pass over them (int8 now, converting
block by block, and the int8 layer as it was; one pass, because the earlier layer took seconds a step).
On the embedded default: whether int8's greedy tokens are the ones the earlier int8 layer chose.
Saved as benchmarks/results/cpu_laptop_<shape>.json; the README and notebook 07 read it. Deletes the checkpoint at the end.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mistral_edu as me  # noqa: E402
from mistral_edu.checkpoints import LazyTensor, write_consolidated  # noqa: E402
from mistral_edu.int8 import Int8Linear, compare_logits, int8_linear, quantize_int8  # noqa: E402
from mistral_edu.memory import free_memory, strategy_bytes, tensor_shapes, weight_bytes  # noqa: E402
from mistral_edu.model.kv_cache import KVCache  # noqa: E402
from mistral_edu.progress import progress  # noqa: E402
from full_size_memory import peak_rss, synthetic_tensor  # noqa: E402
from results import processor, save  # noqa: E402

GB = 1e9
SHAPES = {
    "7b": me.ModelConfig.mistral_7b_instruct_v02(),
    # The 7B's proportions (4 query heads per KV head, FFN 3.5x, head_dim 128) at half its width, 8 layers.
    "mid": me.ModelConfig(dim=2048, n_layers=8, head_dim=128, hidden_dim=7168, n_heads=16, n_kv_heads=4,
                          norm_eps=1e-5, vocab_size=32000, rope_theta=1e6, max_seq_len=32768),
}


def old_int8_forward(layer: Int8Linear, x: torch.Tensor) -> torch.Tensor:
    """Int8Linear.forward before this benchmark's change: the whole matrix cast to x's dtype on every call."""
    y = F.linear(x, layer.weight_int8.to(x.dtype))   # (..., out), a float copy of the matrix
    return (y * layer.scale).to(x.dtype)              # (..., out)


def reset_peak_rss() -> None:
    """Start VmHWM again from the current RSS (Linux: writing 5 to clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


# ----------------------------------------------------------------------------- one measurement (child)

def one_pass_logits(model, tokens: list[int]) -> torch.Tensor:
    """Logits of every position in one forward pass."""
    with torch.no_grad():
        return model(torch.tensor([tokens]))[0]                                               # (seq, vocab)


def stepwise_logits(model, tokens: list[int]) -> torch.Tensor:
    """Logits of every position, one token at a time through a KV cache: what decoding multiplies."""
    cache = KVCache.for_model(model, batch=1, max_seq_len=len(tokens))
    with torch.no_grad():
        return torch.cat([model(torch.tensor([[t]]), cache=cache) for t in tokens], dim=1)[0]  # (seq, vocab)


def child(strategy: str, folder: str, settings: str) -> None:
    """Load, generate, print one JSON line; with settings' logits paths, also save step-by-step logits."""
    s = json.loads(settings)
    torch.set_num_threads(s["threads"])
    start = time.perf_counter()
    model = me.load_model(folder, device="cpu", dtype="bf16", strategy=strategy, verbose=False)
    load_s, load_peak = time.perf_counter() - start, peak_rss()
    prompt = torch.randint(3, 32000, (s["prompt_tokens"],), generator=torch.Generator().manual_seed(0)).tolist()
    reset_peak_rss()
    stamps = []
    start = time.perf_counter()
    tokens = me.generate(model, prompt, max_new_tokens=s["new_tokens"], stop_at_eos=False,
                         stream=lambda t: stamps.append(time.perf_counter()))
    generate_peak = peak_rss()
    result = {"load_s": load_s, "load_peak_rss": load_peak, "generate_peak_rss": generate_peak,
              "first_token_s": stamps[0] - start, "decode_tok_s": (len(stamps) - 1) / (stamps[-1] - stamps[0]),
              "tokens": tokens}
    if s.get("logits"):
        sequence = s.get("sequence") or prompt + tokens[:-1]   # the reference run's own tokens, else those given
        torch.save({"stepwise": stepwise_logits(model, sequence), "one pass": one_pass_logits(model, sequence)},
                   s["logits"])
        result["sequence"] = sequence
        if s.get("old_logits"):
            Int8Linear.forward = old_int8_forward
            torch.save({"one pass": one_pass_logits(model, sequence)}, s["old_logits"])
    print(json.dumps(result))


def run_child(strategy: str, folder: Path, settings: dict, patience_s: float, cfg: me.ModelConfig, bar) -> dict:
    bar.set_postfix_str(strategy)
    wait_for_memory(cfg, strategy, patience_s)
    proc = subprocess.run([sys.executable, __file__, "--child", strategy, str(folder), json.dumps(settings)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        sys.exit(f"the {strategy} run failed (exit code {proc.returncode}):\n" + "\n".join(lines[-8:]))
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    bar.write(f"  {strategy:<7} load {result['load_s']:6.1f} s, peak {result['load_peak_rss'] / GB:5.2f} GB | "
              f"generate: first token {result['first_token_s']:6.2f} s, {result['decode_tok_s']:6.3f} tok/s, "
              f"peak {result['generate_peak_rss'] / GB:5.2f} GB")
    bar.update(1)
    return result


def wait_for_memory(cfg: me.ModelConfig, strategy: str, patience_s: float) -> None:
    """The machine's RAM may be shared: wait (up to patience_s) until load_model's fit check would pass."""
    need = sum(strategy_bytes(cfg, strategy, "bf16").values())
    deadline = time.monotonic() + patience_s
    while free_memory("cpu")[0] < need and time.monotonic() < deadline:
        print(f"waiting for {need / GB:.1f} GB of free RAM for '{strategy}' ({free_memory('cpu')[0] / GB:.1f} GB free)",
              flush=True)
        time.sleep(20)


# ----------------------------------------------------------------------------- in the parent

def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def matvec_timings(repeats: int) -> dict:
    """One token through the 7B's w1 (4096 -> 14336): bf16 F.linear, the int8 layer as it was, int8_linear."""
    w = torch.randn(14336, 4096, generator=torch.Generator().manual_seed(0)).mul_(0.02).to(torch.bfloat16)
    layer = Int8Linear(*quantize_int8(w))
    x = torch.randn(1, 4096, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    with torch.no_grad():
        return {"bf16 F.linear": median_ms(lambda: F.linear(x, w), repeats),
                "int8, whole matrix cast per call (before)": median_ms(lambda: old_int8_forward(layer, x), repeats),
                "int8_linear (now: aten._weight_int8pack_mm)": median_ms(lambda: int8_linear(x, layer.weight_int8, layer.scale), repeats)}


def default_model_tokens(new_tokens: int = 24) -> dict:
    """On the embedded default: int8's greedy tokens now (fast path) and with the int8 layer as it was (plain)."""
    model = me.load_model(device="cpu", strategy="int8", verbose=False)
    tokenizer = me.load_tokenizer()
    prompt = tokenizer.encode("Once upon a time", bos=True)
    now = me.generate(model, prompt, max_new_tokens=new_tokens)
    forward = Int8Linear.forward
    Int8Linear.forward = old_int8_forward
    try:
        before = me.generate(model, prompt, max_new_tokens=new_tokens, fast=False)
    finally:
        Int8Linear.forward = forward
    return {"greedy_tokens_identical": now == before, "new_tokens": new_tokens, "dtype": str(model.dtype)}


def write_checkpoint(cfg: me.ModelConfig, folder: Path) -> None:
    lazy = {name: LazyTensor(torch.bfloat16, shape, lambda n=name, s=shape, i=i: synthetic_tensor(n, s, i))
            for i, (name, shape) in enumerate(tensor_shapes(cfg).items())}
    write_consolidated(lazy, cfg, folder)


def logit_error(reference: torch.Tensor, candidate: torch.Tensor) -> dict:
    report = compare_logits(reference, candidate)
    return {key: report[key] for key in ("max_abs_logit_diff", "mean_abs_logit_diff", "top1_agreement")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="7b")
    parser.add_argument("--dir", help="where to write the checkpoint (default: the temp folder)")
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--int8-runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in every measurement")
    parser.add_argument("--checkpoint", type=Path, help="a synthetic checkpoint of the shape written earlier "
                        "(Mistral layout): used instead of writing one, and left in place")
    parser.add_argument("--wait", type=float, default=1800, help="seconds to wait for free RAM before each run")
    args = parser.parse_args()
    cfg = SHAPES[args.shape]
    torch.set_num_threads(args.threads)
    weights = weight_bytes(cfg, "bf16")
    parent = Path(args.dir or tempfile.gettempdir())
    if shutil.disk_usage(parent).free < 1.05 * weights:
        sys.exit(f"{parent} has {shutil.disk_usage(parent).free / GB:.1f} GB free; the checkpoint needs "
                 f"{weights / GB:.1f} GB. Pass --dir on a larger disk.")

    print("4096 -> 14336 matrix-vector product, one token (median ms):", flush=True)
    matvec = matvec_timings(repeats=20)
    for name, ms in matvec.items():
        print(f"  {name:<46} {ms:7.2f} ms", flush=True)
    default = default_model_tokens()
    print(f"embedded default, int8 greedy tokens as before: {default['greedy_tokens_identical']}", flush=True)

    root = Path(tempfile.mkdtemp(prefix="mistral_edu_cpu_laptop_", dir=parent))
    try:
        start = time.perf_counter()
        folder = args.checkpoint or root / "mistral"
        if args.checkpoint is None:
            write_checkpoint(cfg, folder)
            print(f"wrote the {args.shape} shape ({weights / GB:.2f} GB, bf16) to {folder} in "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
        elif me.ModelConfig.from_params_json(folder / "params.json") != cfg:
            sys.exit(f"{folder} holds another shape than {args.shape}")
        settings = {"prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens, "threads": args.threads}
        logits = {name: root / f"{name}.pt" for name in ("bf16", "int8", "int8_before")}
        with progress(args.int8_runs + 2, "measured runs (each a fresh process)", unit="run") as bar:
            bf16 = run_child("full", folder, settings | {"logits": str(logits["bf16"])}, args.wait, cfg, bar)
            sequence = bf16["sequence"]   # the prompt and what bf16 generated: the same positions in every run
            int8_runs = []
            for run in range(args.int8_runs):
                extra = {"sequence": sequence, "logits": str(logits["int8"]),
                         "old_logits": str(logits["int8_before"])} if run == 0 else {}
                int8_runs.append(run_child("int8", folder, settings | extra, args.wait, cfg, bar))
            stream = run_child("stream", folder, settings, args.wait, cfg, bar)
        reference, now, before = (torch.load(logits[name]) for name in ("bf16", "int8", "int8_before"))
        errors = {"int8 now, decode steps": logit_error(reference["stepwise"], now["stepwise"]),
                  "int8 now, one pass": logit_error(reference["one pass"], now["one pass"]),
                  "int8 before, one pass": logit_error(reference["one pass"], before["one pass"])}
    finally:
        shutil.rmtree(root, ignore_errors=True)
        print(f"removed {root}", flush=True)

    def row(name: str, runs: list[dict]) -> dict:
        return {"strategy": name, "runs": len(runs),
                "load_s": [r["load_s"] for r in runs],
                "load_peak_rss_gb": [r["load_peak_rss"] / GB for r in runs],
                "generate_peak_rss_gb": [r["generate_peak_rss"] / GB for r in runs],
                "first_token_s": [r["first_token_s"] for r in runs],
                "decode_tok_s": [r["decode_tok_s"] for r in runs],
                "same_tokens_as_bf16": [r["tokens"] == bf16["tokens"] for r in runs]}

    rows = [row("full (bf16)", [bf16]), row("int8", int8_runs), row("stream (bf16)", [stream])]
    print(f"\n{args.shape} shape, {weights / GB:.2f} GB of bf16 weights; generate: {args.new_tokens} new tokens "
          f"after a {args.prompt_tokens}-token prompt; torch {torch.__version__}, {args.threads} of {os.cpu_count()} CPUs")
    print(f"{'strategy':<14} {'runs':>4} {'load s':>12} {'peak RSS load':>16} {'peak RSS generate':>18} "
          f"{'first token s':>14} {'decode tok/s':>14}")
    for r in rows:
        def span(values, fmt):
            return fmt.format(min(values)) if len(values) == 1 else f"{fmt.format(min(values))}-{fmt.format(max(values))}"
        print(f"{r['strategy']:<14} {r['runs']:>4} {span(r['load_s'], '{:.1f}'):>12} "
              f"{span(r['load_peak_rss_gb'], '{:.2f}'):>13} GB {span(r['generate_peak_rss_gb'], '{:.2f}'):>15} GB "
              f"{span(r['first_token_s'], '{:.2f}'):>14} {span(r['decode_tok_s'], '{:.3f}'):>14}")
    speedup = statistics.median(rows[1]["decode_tok_s"]) / rows[0]["decode_tok_s"][0]
    print(f"int8 decode / bf16 decode: {speedup:.2f}x")
    for name, e in errors.items():
        print(f"logits vs bf16, {name}: max |diff| {e['max_abs_logit_diff']:.4f}, mean |diff| "
              f"{e['mean_abs_logit_diff']:.5f}, top-1 agree {e['top1_agreement']:.3f}")
    figures = {"shape": args.shape, "config": dataclasses.asdict(cfg),
               "weights_gb": weights / GB, "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens,
               "rows": rows, "int8_decode_speedup": speedup, "matvec_ms": matvec,
               "logit_error_vs_bf16": errors, "logit_positions": len(sequence), "embedded_default": default}
    print("saved", save(f"cpu_laptop_{args.shape}", "benchmarks/cpu_laptop.py", processor(args.threads),
                        figures))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(*sys.argv[2:])
    else:
        main()
