"""Guards: an analysis interprets only a behaviour the loaded model really has.

A patching heatmap or a head attribution means something only if the model performs the task: on a
prompt it gets wrong, "share of the clean answer restored" leaves [0, 1] and every reading of it is
noise. So each analysis first measures the behaviour and asks shows_behaviour(). On the trained
embedded default, which CI runs, the lessons' behaviours are known to be there, so a failure is a bug
and raises. On any other model (the real weights, a random full-size checkpoint) the behaviour may
simply be absent: the guard says so in one line, returns False, and the lesson skips what follows.
"""
from __future__ import annotations

import math

import torch

from ..default import DEFAULT_DIR

MIN_CLEAN_NATS = 1.0          # the clean metric must be at least this (a logit difference, in nats)
MAX_CORRUPTED_SHARE = 0.5     # the corrupted metric at most this share of the clean one
SHARE_RANGE = (-0.1, 1.1)     # a restored share outside this is not "part of the clean answer"


def is_trained_default(model) -> bool:
    """True for the trained embedded default, the model whose behaviours the lessons were measured on."""
    checkpoint = getattr(model, "checkpoint", None)
    return (checkpoint is not None and checkpoint.is_embedded_default
            and (DEFAULT_DIR / "params.json").is_file())


def behaviour_problems(clean: float | None, corrupted: float | None = None, restored=None) -> list[str]:
    """What fails the guard's three conditions, in words; empty when the behaviour is there: shows_behaviour's
    rule without its printing, for choosing the draws that show a behaviour."""
    problems = []
    if clean is not None and not (math.isfinite(clean) and clean >= MIN_CLEAN_NATS):
        problems.append(f"clean metric {clean:.3f} < {MIN_CLEAN_NATS:g} nat")
    if corrupted is not None:
        if clean is None:
            raise ValueError("a corrupted metric needs the clean one to compare with: pass clean=...")
        if not (math.isfinite(corrupted) and corrupted <= MAX_CORRUPTED_SHARE * clean):
            problems.append(f"corrupted metric {corrupted:.3f} > {MAX_CORRUPTED_SHARE:g} x clean {clean:.3f}")
    if restored is not None:
        restored = torch.as_tensor(restored, dtype=torch.float32)
        low, high = SHARE_RANGE
        outside = ~torch.isfinite(restored) | (restored < low) | (restored > high)
        if outside.any():
            worst = restored[outside].flatten()[0].item()
            problems.append(f"{int(outside.sum())} restored share(s) outside [{low:g}, {high:g}], e.g. {worst:.3f}")
    return problems


def shows_behaviour(model, behaviour: str, clean: float | None = None, corrupted: float | None = None,
                    restored=None, strict: bool | None = None) -> bool:
    """Whether the model shows `behaviour` here: clean >= 1 nat, corrupted <= half of clean, every restored
    share in [-0.1, 1.1] (each checked only when given).

    strict (default: whether model is the trained embedded default) turns a failure into an AssertionError;
    otherwise a failure prints "this model does not show <behaviour> here; the analysis below is skipped"
    and returns False, so the caller runs its analysis under `if shown:`.
    """
    if clean is None and corrupted is None and restored is None:
        raise ValueError("give what to check: clean=, and corrupted= and/or restored= (a share table)")
    problems = behaviour_problems(clean, corrupted, restored)
    if not problems:
        return True
    strict = is_trained_default(model) if strict is None else strict
    if strict:
        raise AssertionError(f"the embedded default should show {behaviour}, but: {'; '.join(problems)}")
    print(f"this model does not show {behaviour} here ({'; '.join(problems)}); the analysis below is skipped")
    return False
