"""Exercise checkers for the notebooks: they print a verdict and a hint, and never raise.

A learner's unsolved stub returns None; the checker then prints "not solved yet: hint ..." so the
notebook still runs top to bottom. A wrong answer gets told what is wrong (shape, dtype, values)
before the hint. Every checker returns True when solved, False otherwise.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

__all__ = ["check", "check_function", "compare_tensors", "report"]


def report(solved: bool, message: str) -> bool:
    """Print one verdict line: "correct: ..." or "not solved yet: ..."; return solved."""
    print(("correct: " if solved else "not solved yet: ") + message)
    return solved


def compare_tensors(got: Any, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> str | None:
    """None when got matches expected, else a sentence saying how it differs (type, shape, values)."""
    if not isinstance(got, torch.Tensor):
        return f"expected a torch.Tensor, got {type(got).__name__}"
    if tuple(got.shape) != tuple(expected.shape):
        return f"shape is {tuple(got.shape)}, expected {tuple(expected.shape)}"
    if got.is_complex() != expected.is_complex():
        return f"dtype is {got.dtype}, expected {expected.dtype}"
    got64, expected64 = got.detach().to(torch.complex128 if got.is_complex() else torch.float64), \
        expected.detach().to(torch.complex128 if expected.is_complex() else torch.float64)
    if not torch.allclose(got64.cpu(), expected64.cpu(), atol=atol, rtol=rtol):
        worst = (got64.cpu() - expected64.cpu()).abs().max().item()
        return f"the values differ from the reference by up to {worst:.3g}"
    return None


def check(answer: Any, verify: Callable[[Any], "str | None"], hint: str, success: str = "well done") -> bool:
    """Judge an answer: verify(answer) returns None when right, or what is wrong.

    None as the answer means the learner has not started; an exception inside verify counts as
    wrong and is shown, never raised.
    """
    if answer is None:
        return report(False, f"hint: {hint}")
    try:
        problem = verify(answer)
    except Exception as err:  # a checker must never stop the notebook
        problem = f"checking raised {type(err).__name__}: {err}"
    if problem:
        return report(False, f"{problem}.\n  hint: {hint}")
    return report(True, success)


def check_function(fn: Callable, cases: list[tuple[tuple, Any]], hint: str, success: str = "well done",
                   atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Call a learner's function on each (args, expected) case; a stub returning None is "not started".

    Expected values may be tensors (compared with tolerances) or anything comparable with ==.
    """
    if not callable(fn):
        return report(False, f"expected a function, got {type(fn).__name__}.\n  hint: {hint}")
    for i, (args, expected) in enumerate(cases):
        try:
            got = fn(*args)
        except NotImplementedError:
            got = None
        except Exception as err:  # a learner's bug is reported, never raised
            return report(False, f"case {i + 1} raised {type(err).__name__}: {err}.\n  hint: {hint}")
        if got is None:
            return report(False, f"hint: {hint}")
        if isinstance(expected, torch.Tensor):
            problem = compare_tensors(got, expected, atol=atol, rtol=rtol)
        else:
            problem = None if got == expected else f"returned {got!r}, expected {expected!r}"
        if problem:
            return report(False, f"case {i + 1}: {problem}.\n  hint: {hint}")
    return report(True, success)
