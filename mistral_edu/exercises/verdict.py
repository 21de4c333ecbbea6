"""How every checker judges an answer: one Verdict type, one way to call a learner's code, one type policy.

A checker never raises: an unsolved stub (None, or NotImplementedError) says what to do, a wrong
answer gets a diagnosis of its mistake, a crash in the learner's code is shown as theirs, and a
crash in the checker itself is said to be the package's bug. Answers are accepted in their natural
forms: Python, numpy and 0-d torch numbers where a number is asked, any sequence of them where a tuple
is, and torch tensors, numpy arrays or nested lists where a tensor is.

A wrong answer is judged over several cases chosen so that the usual slips give different results:
a slip is named only when it explains every case; otherwise the message says which case and which
element differ, without guessing a cause.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .catalogue import Exercise

__all__ = ["Case", "LearnerError", "NotStarted", "Verdict", "WrongAnswer", "as_number", "as_pair", "as_tensor",
           "assert_close", "attempt", "check", "compare_tensors", "describe_difference", "judge_numbers",
           "judge_tensors", "max_abs_diff", "report", "same"]


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


class LearnerError(Exception):
    """The learner's code raised: the message shows their exception, never the checker's."""


class WrongAnswer(Exception):
    """An answer of the wrong kind (a string for a number, a matrix for a pair): the message says what to return."""


def report(solved: bool, message: str) -> Verdict:
    """Print one verdict line: "correct: ..." or "not solved yet: ..."; return the Verdict."""
    print(("correct: " if solved else "not solved yet: ") + message)
    return Verdict(solved)


def attempt(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a learner's function on copies of the arguments; a stub raises NotStarted, a crash LearnerError."""
    try:
        result = fn(*(a.clone() if isinstance(a, torch.Tensor) else a for a in args))
    except NotImplementedError as err:
        raise NotStarted from err
    except (NotStarted, LearnerError, WrongAnswer):
        raise
    except Exception as err:  # the learner's bug, reported as theirs
        raise LearnerError(f"your code raised {type(err).__name__}: {err}") from err
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
    except (LearnerError, WrongAnswer) as err:
        problem = str(err)
    except Exception as err:  # the checker's own failure is never blamed on the learner
        problem = (f"the checker itself failed ({type(err).__name__}: {err}); that is a bug in mistral_edu, not in "
                   "your answer: please report it")
    if problem:
        return report(False, f"{problem}.\n  {stuck}")
    return report(True, success)


# ------------------------------------------------------------------ the type policy

def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if isinstance(value, (str, bool)) else type(value).__name__


def as_number(value: Any, what: str = "a number") -> int | float:
    """A Python, numpy or one-element torch number as int or float; anything else raises WrongAnswer."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.reshape(-1)[0].item()
    elif isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0].item()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    raise WrongAnswer(f"return {what} (a Python, numpy or 0-d torch number), got {_kind(value)}")


def as_pair(value: Any, what: str = "a (layer, head) pair of ints") -> tuple[int, int]:
    """Two whole numbers in any sequence form (tuple, list, array, tensor, torch.unravel_index's tuple)."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        value = value.reshape(-1).tolist()
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise WrongAnswer(f"return {what}, got {_kind(value)}")
    numbers = [as_number(v, what) for v in value]
    if any(float(n) != int(n) for n in numbers):
        raise WrongAnswer(f"return {what}, got {value!r}: both must be whole numbers")
    return int(numbers[0]), int(numbers[1])


def as_tensor(value: Any, what: str = "a tensor") -> torch.Tensor:
    """A torch tensor, numpy array or (nested) list of numbers as a tensor; anything else raises WrongAnswer."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufc":
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, (list, tuple)):
        try:
            return torch.tensor([v.tolist() if isinstance(v, (torch.Tensor, np.ndarray)) else v for v in value])
        except (TypeError, ValueError):
            pass
    raise WrongAnswer(f"return {what} (a torch tensor, a numpy array or a list of numbers), got {_kind(value)}")


# ------------------------------------------------------------------ comparing tensors

def _as64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().cpu().to(torch.complex128 if t.is_complex() else torch.float64)


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest elementwise |a - b|, computed in double precision (0.0 for empty tensors)."""
    return (_as64(a) - _as64(b)).abs().max().item() if a.numel() else 0.0


def describe_difference(got: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> str:
    """How many elements differ, and the worst one with its index, its value and the expected value."""
    g, e = _as64(got), _as64(expected)
    wrong = ~torch.isclose(g, e, atol=atol, rtol=rtol, equal_nan=True)
    gap = torch.where(wrong, (g - e).abs().nan_to_num(nan=math.inf), torch.zeros_like(g.real))
    index = tuple(int(i) for i in torch.unravel_index(gap.reshape(-1).argmax(), g.shape))
    show = lambda t: f"{complex(t[index]):.4g}" if t.is_complex() else f"{float(t[index]):.4g}"
    return (f"{int(wrong.sum())} of {g.numel()} elements differ; the worst is element {list(index)}: "
            f"you have {show(g)}, expected {show(e)}")


def compare_tensors(got: Any, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> str | None:
    """None when got matches expected, else a sentence saying how it differs (type, shape, values)."""
    got = as_tensor(got)
    if tuple(got.shape) != tuple(expected.shape):
        return f"shape is {tuple(got.shape)}, expected {tuple(expected.shape)}"
    if got.is_complex() != expected.is_complex():
        return f"dtype is {got.dtype}, expected {expected.dtype}"
    if torch.isnan(got).any() and not torch.isnan(expected).any():
        return f"your result contains NaN where the reference has numbers ({describe_difference(got, expected)})"
    if not torch.allclose(_as64(got), _as64(expected), atol=atol, rtol=rtol):
        return describe_difference(got, expected, atol, rtol)
    return None


def same(got: Any, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """True when got is a tensor equal to expected within the tolerances (NaN equal to NaN)."""
    return (isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(expected.shape)
            and torch.allclose(_as64(got), _as64(expected), atol=atol, rtol=rtol, equal_nan=True))


@dataclass
class Case:
    """One input a checker tries: a label that names it in a message, the arguments, the right answer."""

    label: str
    args: tuple
    expected: Any
    extra: dict = field(default_factory=dict)


def judge_tensors(fn: Callable, cases: Sequence[Case], slips: dict[str, Callable[[Case], torch.Tensor]],
                  atol: float = 1e-5, rtol: float = 1e-4, convert: Callable[[Any], torch.Tensor] = as_tensor) -> str | None:
    """None when fn is right on every case; else the slip that explains every case, else the first wrong case.

    slips maps a diagnosis to the answer that slip gives on a case; it is named only when the
    learner's answers equal it on all the cases, so two slips that agree on one case are told apart.
    """
    got = [convert(attempt(fn, *case.args)) for case in cases]
    problems = [compare_tensors(g, case.expected, atol, rtol) for g, case in zip(got, cases)]
    if not any(problems):
        return None
    for message, make in slips.items():
        if all(same(g, make(case), atol, rtol) for g, case in zip(got, cases)):
            return message
    i = next(i for i, problem in enumerate(problems) if problem)
    return f"{cases[i].label}: {problems[i]}"


def judge_numbers(fn: Callable, cases: Sequence[Case], slips: dict[str, Callable[[Case], float]],
                  rel_tol: float = 1e-9, what: str = "a number", show: Callable[[float], str] = "{:,.6g}".format
                  ) -> str | None:
    """judge_tensors for functions that return one number: a slip must explain every case to be named."""
    got = [as_number(attempt(fn, *case.args), what) for case in cases]
    close = lambda a, b: math.isclose(a, b, rel_tol=rel_tol)
    if all(close(g, case.expected) for g, case in zip(got, cases)):
        return None
    for message, make in slips.items():
        if all(close(g, make(case)) for g, case in zip(got, cases)):
            return message
    i = next(i for i, (g, case) in enumerate(zip(got, cases)) if not close(g, case.expected))
    return f"{cases[i].label}: you have {show(got[i])}, expected {show(cases[i].expected)}"


def assert_close(label: str, got: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """Print that a hand-built result equals the reference, with the largest difference; raise if not.

    This is for checking the lesson's own code against the package or a library, not a learner's
    answer: a mismatch there is a bug, so it stops the notebook.
    """
    problem = compare_tensors(got, expected, atol=atol, rtol=rtol)
    if problem:
        raise AssertionError(f"{label}: {problem}")
    print(f"{label}: equal, max |diff| = {max_abs_diff(got, expected):.1e}")
