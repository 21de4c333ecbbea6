"""fp16 and bf16 against fp32 on a full-size checkpoint, layer by layer, with the weights streamed from disk.

A GPU without native bf16 (compute capability below 8.0, e.g. a T4) gets float16 from load_model():
the same 2 bytes per value as bf16, three more mantissa bits (10 against 7), far less range (largest
finite value 65,504 against 3.4e38). This script measures what that costs in precision, on the same
prompt, against float32 as the reference:

  - the residual stream after every block: relative error ||x - x_fp32|| / ||x_fp32||;
  - the logits: relative error, largest absolute difference, top-1 agreement;
  - the residual stream's largest magnitude per block, against fp16's largest finite value.

It runs each dtype with strategy="stream" (one block's weights at a time): float32 of the whole model
is 29 GB, more than a 24 GiB machine holds. Rounding theory says the errors scale with the unit
roundoff, 2^-11 for fp16 and 2^-8 for bf16, so fp16's should be about 8x smaller than bf16's; the
script asserts that before it saves anything. With a synthetic checkpoint (random weights, std 0.02)
the activations stay small, so fp16's range is never tested here: real weights have outlier features
far larger than the rest (Dettmers et al. 2022, "LLM.int8()", arXiv:2208.07339), and
mistral_edu.analysis.nonfinite finds the first block where one overflows.

Run: `python benchmarks/fp16_vs_fp32.py /path/to/a/mistral-7b/folder` (Mistral's or Hugging Face's layout;
`python benchmarks/full_size_memory.py --keep --runs stream:mistral` writes a synthetic one and keeps it).
About 15 minutes on 2 CPU cores; the figures go to benchmarks/results/fp16_vs_fp32.json.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import save  # noqa: E402

import mistral_edu as me  # noqa: E402
from mistral_edu.checkpoints import find_checkpoint, read_config  # noqa: E402
from mistral_edu.int8 import compare_logits  # noqa: E402
from mistral_edu.tokenizer import Tokenizer, mistral_common_v1_path  # noqa: E402

PROMPT = ("[INST] Explain, in two sentences, why a transformer's residual stream is a sum of what every "
          "layer wrote into it. [/INST]")
UNIT_ROUNDOFF = {"fp16": 2.0 ** -11, "bf16": 2.0 ** -8}
FP16_MAX = torch.finfo(torch.float16).max


def run(folder: str, dtype: str, tokens: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], float]:
    """Logits (1, seq, vocab), the residual stream after each block (as float32) and the forward's seconds."""
    model = me.load_model(folder, device="cpu", dtype=dtype, strategy="stream")
    start = time.perf_counter()
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, names=lambda name: name.endswith("hook_resid_post"))
    seconds = time.perf_counter() - start
    return logits, [cache[f"layers.{i}.hook_resid_post"].float() for i in range(model.cfg.n_layers)], seconds


def tokenizer_for(folder: Path) -> Tokenizer:
    """The folder's tokenizer.model, else mistral-common's v1 (v0.2's)."""
    own = folder / "tokenizer.model"
    return Tokenizer(own if own.is_file() else mistral_common_v1_path())


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def relative_error(x: torch.Tensor, reference: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(x - reference) / torch.linalg.vector_norm(reference))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", nargs="?", default=os.environ.get("MISTRAL_EDU_WEIGHTS"),
                        help="a full-size checkpoint folder (default: $MISTRAL_EDU_WEIGHTS)")
    args = parser.parse_args()
    if not args.weights or not Path(args.weights).is_dir():
        sys.exit("give a Mistral-7B checkpoint folder (or set MISTRAL_EDU_WEIGHTS); "
                 "`python benchmarks/full_size_memory.py --keep --runs stream:mistral` writes a synthetic one")
    torch.set_grad_enabled(False)
    tokens = torch.tensor([tokenizer_for(Path(args.weights)).encode(PROMPT, bos=True)])  # (1, seq)
    print(f"{tokens.shape[1]}-token prompt, weights streamed from {args.weights}", flush=True)

    reference, reference_resid, fp32_s = run(args.weights, "fp32", tokens)
    print(f"fp32: {fp32_s:.0f} s", flush=True)
    largest = [float(r.abs().max()) for r in reference_resid]
    figures = {"prompt_tokens": tokens.shape[1], "fp32_forward_s": round(fp32_s, 1),
               "residual_abs_max_fp32": {"largest": max(largest), "layer": largest.index(max(largest)),
                                         "fp16_max": FP16_MAX}}
    for dtype in ("fp16", "bf16"):
        logits, resid, seconds = run(args.weights, dtype, tokens)
        per_layer = [relative_error(r, ref) for r, ref in zip(resid, reference_resid)]
        logit_cmp = compare_logits(reference, logits)
        figures[dtype] = {"forward_s": round(seconds, 1), "unit_roundoff": UNIT_ROUNDOFF[dtype],
                          "logits_relative_error": relative_error(logits.float(), reference),
                          "max_abs_logit_diff": logit_cmp["max_abs_logit_diff"],
                          "top1_agreement": logit_cmp["top1_agreement"],
                          "residual_relative_error_first_block": per_layer[0],
                          "residual_relative_error_last_block": per_layer[-1],
                          "residual_relative_error_max": max(per_layer),
                          "residual_relative_error_per_block": per_layer}
        print(f"{dtype}: {seconds:.0f} s; logits relative error {figures[dtype]['logits_relative_error']:.2e}, "
              f"max |diff| {logit_cmp['max_abs_logit_diff']:.4f}, top-1 agreement {logit_cmp['top1_agreement']:.3f}; "
              f"residual relative error block 0 {per_layer[0]:.2e}, last {per_layer[-1]:.2e}", flush=True)

    fp16, bf16 = figures["fp16"], figures["bf16"]
    ratio = bf16["logits_relative_error"] / fp16["logits_relative_error"]
    figures["bf16_over_fp16_error"] = ratio
    print(f"bf16's logit error / fp16's: {ratio:.1f} (unit roundoffs: 8); largest |residual| in fp32 "
          f"{max(largest):.2f} at block {largest.index(max(largest))}, fp16's limit {FP16_MAX:,.0f}")
    assert 4 <= ratio <= 16, f"fp16's error should be about 8x smaller than bf16's, got {ratio:.1f}x"
    assert fp16["top1_agreement"] >= bf16["top1_agreement"], "fp16 should agree with fp32 at least as often as bf16"
    shape = read_config(find_checkpoint(args.weights)) == me.ModelConfig.mistral_7b_instruct_v02()
    device = (f"{cpu_name()}, {os.cpu_count()} CPU cores; weights {args.weights} "
              f"({'the full v0.2 shape' if shape else 'NOT the v0.2 shape'})")
    print("saved", save("fp16_vs_fp32", "benchmarks/fp16_vs_fp32.py", device, figures))


if __name__ == "__main__":
    main()
