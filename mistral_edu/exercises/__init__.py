"""Exercise checkers for the notebooks: they print a verdict and a hint, and never raise.

A learner's unsolved stub returns None; the checker then prints "not solved yet: hint ..." so the
notebook still runs top to bottom. A wrong answer gets told what is wrong (shape, dtype, values)
before the hint. Every checker returns a Verdict: truthy when solved, falsy otherwise (`if verdict:`,
`assert verdict`), and invisible as a notebook cell's last value, so only the printed line shows.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

__all__ = ["Verdict", "assert_close", "check", "check_function", "compare_tensors", "max_abs_diff", "report"]


class Verdict:
    """A checker's result: true when solved. It shows nothing in a notebook (the printed line says it all)."""

    def __init__(self, solved: bool):
        self.solved = bool(solved)

    def __bool__(self) -> bool:
        return self.solved

    def __eq__(self, other) -> bool:
        return self.solved == bool(other)

    def __hash__(self) -> int:
        return hash(self.solved)

    def __repr__(self) -> str:
        return f"Verdict(solved={self.solved})"

    def _ipython_display_(self) -> None:
        """Display nothing: the verdict line was printed already."""


def report(solved: bool, message: str) -> Verdict:
    """Print one verdict line: "correct: ..." or "not solved yet: ..."; return the Verdict."""
    print(("correct: " if solved else "not solved yet: ") + message)
    return Verdict(solved)


def compare_tensors(got: Any, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> str | None:
    """None when got matches expected, else a sentence saying how it differs (type, shape, values)."""
    if not isinstance(got, torch.Tensor):
        return f"expected a torch.Tensor, got {type(got).__name__}"
    if tuple(got.shape) != tuple(expected.shape):
        return f"shape is {tuple(got.shape)}, expected {tuple(expected.shape)}"
    if got.is_complex() != expected.is_complex():
        return f"dtype is {got.dtype}, expected {expected.dtype}"
    if not torch.allclose(_as64(got), _as64(expected), atol=atol, rtol=rtol):
        return f"the values differ from the reference by up to {max_abs_diff(got, expected):.3g}"
    return None


def _as64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().cpu().to(torch.complex128 if t.is_complex() else torch.float64)


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest elementwise |a - b|, computed in double precision (0.0 for empty tensors)."""
    return (_as64(a) - _as64(b)).abs().max().item() if a.numel() else 0.0


def check(answer: Any, verify: Callable[[Any], "str | None"], hint: str, success: str = "well done") -> Verdict:
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


def check_function(fn: Callable, cases: list[tuple[tuple, Any]], hint: str, success: str | None = "well done",
                   atol: float = 1e-5, rtol: float = 1e-4) -> Verdict:
    """Call a learner's function on each (args, expected) case; a stub returning None is "not started".

    Expected values may be tensors (compared with tolerances) or anything comparable with ==.
    With success=None nothing is printed when every case passes (for checkers that test more after).
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
    return Verdict(True) if success is None else report(True, success)


def assert_close(label: str, got: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """Print that a hand-built result equals the reference, with the largest difference; raise if not.

    This is for checking the lesson's own code against the package or a library, not a learner's
    answer: a mismatch there is a bug, so it stops the notebook.
    """
    problem = compare_tensors(got, expected, atol=atol, rtol=rtol)
    if problem:
        raise AssertionError(f"{label}: {problem}")
    print(f"{label}: equal, max |diff| = {max_abs_diff(got, expected):.1e}")
