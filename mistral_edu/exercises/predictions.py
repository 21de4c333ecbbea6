"""Predict, then run: the learner writes a prediction into a variable before a key cell; the cell
after it compares the prediction with what ran and says so in one line.

Committing to a number or a yes/no before seeing it is what turns reading a result into testing an
understanding: a wrong prediction points at the idea to revisit. Nothing is graded; an empty
prediction just gets the result.
"""
from __future__ import annotations

from .verdict import Verdict

__all__ = ["compare_prediction"]


def compare_prediction(what: str, prediction, actual, factor: float = 1.1) -> Verdict:
    """Print how a prediction compares with the run; a Verdict, true when it matches.

    Like a checker's verdict it shows nothing as a cell's last value: the printed line says it all.

    Numbers match within `factor` either way (1.1: within 10%; 2: the right order of magnitude
    and then some); anything else (True/False, a string) must be equal. A prediction of None
    (not written yet) prints the result and returns False.
    """
    if factor < 1:
        raise ValueError(f"factor must be >= 1 (1.1 accepts predictions within 10% either way), got {factor}")
    if prediction is None:
        print(f"{what}: no prediction written (set it in the cell above first, then run both); the run gives {actual}")
        return Verdict(False)
    if isinstance(actual, bool) or not isinstance(actual, (int, float)):
        right = prediction == actual
        print(f"{what}: you predicted {prediction!r}, the run gives {actual!r}: "
              + ("right" if right else "not what happened; the text below says why"))
        return Verdict(right)
    if isinstance(prediction, bool) or not isinstance(prediction, (int, float)):
        print(f"{what}: the run gives the number {actual:,.4g}; predict a number, not {prediction!r}")
        return Verdict(False)
    right = prediction * actual > 0 and max(prediction / actual, actual / prediction) <= factor
    off = "" if prediction == 0 or actual == 0 else f" ({actual / prediction:.2g}x your prediction)"
    print(f"{what}: you predicted {prediction:,.4g}, the run gives {actual:,.4g}: "
          + ("right" if right else "not within the margin" + off + "; the text below says why"))
    return Verdict(right)
