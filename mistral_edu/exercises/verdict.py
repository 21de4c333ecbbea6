"""How every checker judges an answer: one Verdict type, one way to call a learner's code.

A checker never raises: an unsolved stub (None, or NotImplementedError) says what to do, a wrong
answer gets a diagnosis of its mistake, a crash is shown, and the notebook runs on.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from .catalogue import Exercise

__all__ = ["NotStarted", "Verdict", "assert_close", "attempt", "check", "compare_tensors", "diagnose",
           "max_abs_diff", "report", "same"]


class Verdict:
    """A checker's result: true when solved. It shows nothing in a notebook (the printed line says it all)."""

    def __init__(self, solved: bool):
        self.solved = bool(solved)

    def __bool__(self) -> bool:
        return self.solved

    def __eq__(self, other: object) -> bool:
        return self.solved == bool(other)

    def __hash__(self) -> int:
        return hash(self.solved)

    def __repr__(self) -> str:
        return f"Verdict(solved={self.solved})"

    def _ipython_display_(self) -> None:
        """Display nothing: the verdict line was printed already."""


class NotStarted(Exception):
    """The learner's function is still the stub: it returned None or raised NotImplementedError."""


def report(solved: bool, message: str) -> Verdict:
    """Print one verdict line: "correct: ..." or "not solved yet: ..."; return the Verdict."""
    print(("correct: " if solved else "not solved yet: ") + message)
    return Verdict(solved)


def attempt(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a learner's function; a stub (None or NotImplementedError) raises NotStarted."""
    try:
        result = fn(*args)
    except NotImplementedError as err:
        raise NotStarted from err
    if result is None:
        raise NotStarted
    return result


def check(exercise: Exercise, answer: Any, verify: Callable[[Any], str | None], success: str) -> Verdict:
    """Judge an answer: verify(answer) returns None when right, or the diagnosis of what is wrong.

    An answer of None (or a stub that returns None) prints only the task, never the solution; a
    wrong answer prints its diagnosis and where to get a hint. Exceptions are shown, never raised.
    """
    stuck = f"stuck? exercises.hint({exercise.name!r})"
    if answer is None:
        return report(False, f"{exercise.header()}: {exercise.task}.\n  {stuck}")
    if exercise.takes_function and not callable(answer):
        return report(False, f"expected a function, got {type(answer).__name__}.\n  {stuck}")
    try:
        problem = verify(answer)
    except NotStarted:
        return report(False, f"{exercise.header()}: {exercise.task}.\n  {stuck}")
    except Exception as err:  # a learner's bug is reported, never raised
        problem = f"your code raised {type(err).__name__}: {err}"
    if problem:
        return report(False, f"{problem}.\n  {stuck}")
    return report(True, success)


def compare_tensors(got: Any, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> str | None:
    """None when got matches expected, else a sentence saying how it differs (type, shape, values)."""
    if not isinstance(got, torch.Tensor):
        return f"expected a torch.Tensor, got {type(got).__name__}"
    if tuple(got.shape) != tuple(expected.shape):
        return f"shape is {tuple(got.shape)}, expected {tuple(expected.shape)}"
    if got.is_complex() != expected.is_complex():
        return f"dtype is {got.dtype}, expected {expected.dtype}"
    if torch.isnan(got).any() and not torch.isnan(expected).any():
        return "your result contains NaN where the reference has numbers"
    if not torch.allclose(_as64(got), _as64(expected), atol=atol, rtol=rtol):
        return f"the values differ from the reference by up to {max_abs_diff(got, expected):.3g}"
    return None


def same(got: Any, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """True when got is a tensor equal to expected within the tolerances (NaN equal to NaN)."""
    return (isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(expected.shape)
            and torch.allclose(_as64(got), _as64(expected), atol=atol, rtol=rtol, equal_nan=True))


def diagnose(got: Any, reference: torch.Tensor, mistakes: dict[str, Callable[[], torch.Tensor]],
             atol: float = 1e-5, rtol: float = 1e-4) -> str | None:
    """None when got equals the reference; else the message of the known mistake it equals, if any.

    Each mistake is the wrong answer that slip produces, built lazily so a checker pays only for the
    ones it needs; an answer matching none gets a description of how it differs.
    """
    problem = compare_tensors(got, reference, atol=atol, rtol=rtol)
    if problem is None:
        return None
    for message, make in mistakes.items():
        if same(got, make(), atol=atol, rtol=rtol):
            return message
    return problem


def _as64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().cpu().to(torch.complex128 if t.is_complex() else torch.float64)


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest elementwise |a - b|, computed in double precision (0.0 for empty tensors)."""
    return (_as64(a) - _as64(b)).abs().max().item() if a.numel() else 0.0


def assert_close(label: str, got: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """Print that a hand-built result equals the reference, with the largest difference; raise if not.

    This is for checking the lesson's own code against the package or a library, not a learner's
    answer: a mismatch there is a bug, so it stops the notebook.
    """
    problem = compare_tensors(got, expected, atol=atol, rtol=rtol)
    if problem:
        raise AssertionError(f"{label}: {problem}")
    print(f"{label}: equal, max |diff| = {max_abs_diff(got, expected):.1e}")
