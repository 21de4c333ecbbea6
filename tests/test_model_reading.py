"""The forward pass can be read in one sitting: the functions it reaches, counted, stay under 600 lines.

A profiler records every function of the package that runs while the model computes logits: without
a cache, through a KVCache (prefill, one decode step, a chunk after the cache), and with a hook that
replaces the attention pattern (so the explicit attention path runs too). Their non-blank lines,
docstrings and shape comments included, are what a reader follows from Transformer.forward down.
"""
from __future__ import annotations

import inspect
import sys
from pathlib import Path

import torch

import mistral_edu as me
from mistral_edu.model import KVCache

from conftest import randomize_, small_config

PACKAGE = str(Path(me.__file__).parent)
LIMIT = 600


def functions_reached(run) -> set:
    """The code objects of the package's functions that run(), and anything it calls, enter."""
    reached = set()

    def record(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.startswith(PACKAGE):
            reached.add(frame.f_code)

    sys.setprofile(record)
    try:
        run()
    finally:
        sys.setprofile(None)
    return reached


def non_blank_lines(code) -> int:
    lines, _ = inspect.getsourcelines(code)
    return sum(1 for line in lines if line.strip())


@torch.no_grad()
def forward_functions() -> set:
    model = randomize_(me.Transformer(small_config()), seed=0).eval()
    tokens = torch.randint(3, 256, (1, 6), generator=torch.Generator().manual_seed(0))
    reached = functions_reached(lambda: model(tokens))
    cache = KVCache.for_model(model, max_seq_len=16)
    reached |= functions_reached(lambda: (model(tokens, cache=cache), model(tokens[:, :1], cache=cache),
                                          model(tokens[:, :3], cache=cache)))
    with model.hooks([(lambda name: name.endswith("hook_pattern"), lambda pattern, hook: pattern * 1.0)]):
        reached |= functions_reached(lambda: model(tokens))
    return reached


def test_the_forward_pass_reads_in_under_600_lines_from_model_and_the_hook_point():
    reached = forward_functions()
    assert any(code.co_qualname == "Attention.attention_through_hooks" for code in reached), \
        "the explicit attention path did not run: the count would leave it out"
    total = sum(non_blank_lines(code) for code in reached)
    rooms = {Path(code.co_filename).relative_to(PACKAGE).parts[0] for code in reached}
    assert total < LIMIT, f"following the forward means reading {total} lines of {len(reached)} functions"
    assert rooms <= {"model", "hooks"}, f"the forward reaches beyond model/ and hooks/: {sorted(rooms)}"


def test_the_count_sees_a_function_and_all_its_lines():
    def example():
        """A docstring counts."""

        return 1   # so does a comment; the blank line above does not

    assert functions_reached(lambda: None) == set()
    assert non_blank_lines(example.__code__) == 3
