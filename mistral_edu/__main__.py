"""Command line: `python -m mistral_edu info` says what this machine would run, before any notebook does.

Subcommands are argparse sub-parsers: add one with a function `cmd_<name>(args)` and a line in
build_parser().
"""
from __future__ import annotations

import argparse
import platform
import sys

import torch

from . import memory
from .config import ModelConfig
from .dtypes import dtype_name
from .tokenizer import mistral_common_v1_path
from .checkpoints import default_dtype, find_checkpoint, load_tokenizer, parse_device, plan_load, read_config


def describe_weights() -> str:
    """Which checkpoint load_model() would take, and why; an unusable one is reported, not raised."""
    try:
        checkpoint = find_checkpoint()
    except (OSError, ValueError) as err:
        return f"weights:   ERROR {err}"
    if checkpoint.is_embedded_default:
        trained = (checkpoint.folder / "params.json").is_file()
        return (f"weights:   the embedded default ({'trained' if trained else 'randomly initialised'}, "
                f"{checkpoint.reason}: set $MISTRAL_EDU_WEIGHTS or download to the Hugging Face cache)")
    try:
        cfg = read_config(checkpoint)
        shape = (f"{memory.parameter_count(cfg):,} parameters, {cfg.n_layers} layers, dim {cfg.dim}, "
                 f"vocab {cfg.vocab_size}")
    except (OSError, ValueError) as err:
        shape = f"unreadable config: {err}"
    return (f"weights:   {checkpoint.folder} ({checkpoint.layout} layout), found via {checkpoint.reason}\n"
            f"           {shape}")


def describe_tokenizer() -> str:
    """Which tokenizer load_tokenizer() would take: the weights folder's, else mistral-common's v1."""
    try:
        tok = load_tokenizer()
    except (OSError, ValueError, ImportError) as err:
        return f"tokenizer: ERROR {err}"
    if tok.path == mistral_common_v1_path():
        why = "mistral-common's v1, sha256 checked: no tokenizer.model beside the weights"
    else:
        why = "the tokenizer.model beside the weights"
    return f"tokenizer: {tok.path} ({tok.vocab_size} pieces; {why})"


def describe_fit(device: torch.device, context: int) -> str:
    """Whether Mistral-7B-Instruct-v0.2 fits on device, in the dtype load_model would choose there."""
    cfg = ModelConfig.mistral_7b_instruct_v02()
    dtype, why = default_dtype(cfg, device)
    fmt = dtype_name(dtype)
    plan = memory.estimate(cfg, weights=fmt, context=context)
    needed = plan.total_with_overhead if device.type == "cuda" else plan.total
    line = f"Mistral-7B-Instruct-v0.2 in {fmt} ({why}), context {context:,}: needs {needed / 1e9:.1f} GB"
    try:
        free, source = memory.free_memory(device)
    except ValueError as err:
        return line + f"; {err}"
    verdict = "fits" if needed <= free else "does NOT fit"
    try:
        strategy = plan_load(cfg, device, dtype, verbose=False, free=free, context=context).strategy
        how = f"load_model() would load it with strategy '{strategy}' (planned for {context:,} tokens)"
    except MemoryError:
        how = "load_model() would refuse it: not even streaming fits"
    return line + f"; {free / 1e9:.1f} GB available ({source}): {verdict}; {how}"


def cmd_info(args) -> int:
    try:
        device = parse_device(args.device)
    except ValueError as err:
        print(f"device:    ERROR {err}")
        return 1
    print(f"mistral_edu on Python {platform.python_version()}, torch {torch.__version__}")
    print(describe_weights())
    print(describe_tokenizer())
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "no CUDA GPU in use"
    print(f"device:    {device} ({gpu})")
    print(describe_fit(device, args.context))
    return 0


def vram_rows(cfg: ModelConfig, formats: list[str], contexts: list[int], batch: int, free: int | None) -> list[str]:
    """One line per format and context: weights, KV cache, activation peak, totals, and the fit."""
    head = (f"{'format':<12} {'context':>8} {'weights':>8} {'KV cache':>9} {'activ.':>7} {'total':>7} "
            f"{'+overhead':>9}" + ("  fits?" if free is not None else ""))
    lines = [head, "-" * len(head)]
    for fmt in formats:
        for context in contexts:
            e = memory.estimate(cfg, weights=fmt, context=context, batch=batch)
            line = (f"{e.weights:<12} {context:>8,} {e.parts['weights'] / 1e9:8.2f} {e.parts['KV cache'] / 1e9:9.2f} "
                    f"{e.parts['activations'] / 1e9:7.2f} {e.total / 1e9:7.2f} {e.total_with_overhead / 1e9:9.2f}")
            if free is not None:
                line += "  yes" if e.total_with_overhead <= free else "  no"
            lines.append(line)
    return lines


def cmd_vram(args) -> int:
    """The model page's "GPU requirements" question, answered per format and context, with the parts."""
    cfg = ModelConfig.mistral_7b_instruct_v02()
    try:
        formats = [memory.weight_format(f).name for f in args.format] if args.format else list(memory.WEIGHT_FORMATS)
        contexts = [memory.check_context(cfg, c) for c in args.context] if args.context else [1024, 16384, 32768]
        batch = memory.check_batch(args.batch)
        free = None
        if args.device is not None:
            device = parse_device(args.device)
            free, source = memory.free_memory(device)
    except ValueError as err:
        print(f"python -m mistral_edu vram: error: {err}", file=sys.stderr)
        return 2
    print(f"Mistral-7B-Instruct-v0.2: {memory.parameter_count(cfg):,} parameters; KV cache "
          f"{memory.kv_bytes_per_token(cfg) // 1024} KiB per token in bf16 "
          f"({memory.kv_bytes_per_token(cfg, gqa=False) // 1024} KiB without GQA); batch {batch}")
    print("GB = 1e9 bytes. total = what PyTorch allocates for a prefill of `context` tokens (SDPA, last-token "
          f"logits); +overhead adds the CUDA context (~{memory.CUDA_CONTEXT_BYTES / 1e9:.2f} GB)."
          + (f" fits? compares +overhead with {free / 1e9:.2f} GB free on {device} ({source})." if free is not None else ""))
    print("\n".join(vram_rows(cfg, formats, contexts, batch, free)))
    print()
    print(memory.estimate(cfg, weights=formats[0] if args.format else "bf16", context=contexts[-1], batch=batch))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mistral_edu", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="which weights, tokenizer and device load_model() would use")
    info.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: cuda if available)")
    info.add_argument("--context", type=int, default=4096, help="tokens of KV cache in the fit check")
    info.set_defaults(run=cmd_info)
    vram = commands.add_parser("vram", help="memory per weight format at 1k / 16k / 32k context, and its parts")
    vram.add_argument("--context", type=int, action="append", help="tokens (repeatable; default 1024 16384 32768)")
    vram.add_argument("--batch", type=int, default=1, help="sequences at once (default 1)")
    vram.add_argument("--format", action="append",
                      help=f"weight format (repeatable): {', '.join(memory.WEIGHT_FORMATS)}; e.g. Q4_K_M")
    vram.add_argument("--device", default=None, help="also say whether each fits the free memory of this device")
    vram.set_defaults(run=cmd_vram)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
