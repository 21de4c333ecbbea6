"""Probing and steering exercises (notebook 12): a probe's balanced accuracy, and a steering vector.

The references are mistral_edu.analysis's balanced_accuracy and mean_difference, the functions the
lesson's curves are computed with. The inputs are imbalanced on purpose: with equal classes plain
accuracy and balanced accuracy agree, and so do a difference of sums and of means.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from ..analysis.probing import balanced_accuracy
from ..analysis.steering import mean_difference
from .catalogue import Exercise, register
from .verdict import Verdict, attempt, check, diagnose

__all__ = ["check_balanced_accuracy", "check_mean_difference"]

BALANCED_ACCURACY = register(Exercise(
    name="balanced_accuracy", notebook="12", difficulty=1, minutes=10,
    task="write balanced_accuracy(logits, labels): a probe predicts label 1 where its logit is > 0; return, as a "
         "float, the mean over the two classes of the share of that class's examples predicted right",
    hints=("with 3 Bible tokens for every Jargon token, always answering 'Bible' is 75% accurate and has learnt "
           "nothing; averaging the two classes' hit rates puts chance at 50% whatever the mix",
           "predicted = logits > 0; for c in (0, 1): the mean of (predicted == c) over the rows where labels == c; "
           "return the average of the two numbers"),
    solution='''def balanced_accuracy(logits, labels):
    predicted = (logits > 0).long()
    hits = [(predicted[labels == c] == c).float().mean() for c in (0, 1)]
    return float(sum(hits) / 2)''',
))

MEAN_DIFFERENCE = register(Exercise(
    name="mean_difference", notebook="12", difficulty=1, minutes=10,
    task="write mean_difference(x, labels): for residual vectors x (n, dim) and 0/1 labels (n,), the mean of the "
         "rows labelled 1 minus the mean of the rows labelled 0, a (dim,) steering vector",
    hints=("the steering vector points from the average label-0 residual to the average label-1 residual: adding it "
           "moves a label-0 text's residuals toward label 1",
           "x[labels == 1].mean(0) - x[labels == 0].mean(0): average over the rows (dim 0), one class at a time"),
    solution='''def mean_difference(x, labels):
    return x[labels == 1].mean(0) - x[labels == 0].mean(0)        # (dim,)''',
))


def _scores() -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels with 3 times as many 0s as 1s, and logits between 0 and 0.5 that a 0.5 threshold misreads."""
    labels = torch.tensor([0] * 12 + [1] * 4)
    logits = torch.tensor([-2.0, -1.0, -0.5, -3.0, -1.5, -0.2, -0.7, -2.5, 0.3, 0.4, 1.0, 2.0,    # 0s: 8 of 12 right
                           0.2, 0.1, 1.5, -0.3])                                                    # 1s: 3 of 4 right
    return logits, labels


def check_balanced_accuracy(fn: Callable[[torch.Tensor, torch.Tensor], float] | None) -> Verdict:
    """fn(logits, labels) -> the balanced accuracy of the prediction logit > 0."""
    logits, labels = _scores()
    expected = balanced_accuracy(logits, labels)
    predicted = (logits > 0).long()
    wrong = {
        float((predicted == labels).float().mean()):
            "that is the plain accuracy over all examples; with 3 label-0 rows for every label-1 row it is pulled "
            "toward the majority class: average the two classes' hit rates instead",
        balanced_accuracy(logits - 0.5, labels):
            "you thresholded at 0.5: these are logits, not probabilities, so label 1 is predicted where logit > 0",
        1 - expected: "your predictions are flipped: a positive logit means label 1",
        float((predicted[labels == 1] == 1).float().mean()):
            "that is the hit rate of label 1 alone (the recall): average it with label 0's hit rate",
    }

    def verify(fn) -> str | None:
        got = attempt(fn, logits.clone(), labels.clone())
        got = float(got)
        if math.isclose(got, expected, abs_tol=1e-6):
            return None
        return next((why for value, why in wrong.items() if math.isclose(got, value, abs_tol=1e-6)),
                    f"{got:.4f} is not the balanced accuracy of these logits")

    return check(BALANCED_ACCURACY, fn, verify,
                 f"balanced accuracy {expected:.4f}; the plain accuracy here would be {(predicted == labels).float().mean():.4f}")


def check_mean_difference(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None) -> Verdict:
    """fn(x, labels) equal to the package's mean_difference on imbalanced classes."""
    generator = torch.Generator().manual_seed(12)
    labels = torch.tensor([0] * 9 + [1] * 3)[torch.randperm(12, generator=generator)]     # (12,)
    x = torch.randn(12, 6, generator=generator) + 2 * labels[:, None]                    # (12, 6)
    ones, zeros = x[labels == 1], x[labels == 0]

    def verify(fn) -> str | None:
        got = attempt(fn, x.clone(), labels.clone())
        return diagnose(got, mean_difference(x, labels), {
            "the sign is reversed: label 1's mean minus label 0's, so adding the vector moves toward label 1":
                lambda: zeros.mean(0) - ones.mean(0),
            "you subtracted sums, not means: the class with more rows (here label 0, 9 of 12) then dominates; "
            "divide each sum by its own count": lambda: ones.sum(0) - zeros.sum(0),
            "you subtracted the mean of ALL rows, not the mean of label 0's rows":
                lambda: ones.mean(0) - x.mean(0),
            "you averaged over the features (dim -1) instead of over the rows (dim 0): the vector has one entry per "
            "feature": lambda: ones.mean(-1).mean() - zeros.mean(-1).mean() + torch.zeros(()),
            "you normalised the vector to length 1: the lesson's scales are in units of the raw difference":
                lambda: (ones.mean(0) - zeros.mean(0)) / (ones.mean(0) - zeros.mean(0)).norm(),
        })

    return check(MEAN_DIFFERENCE, fn, verify, "your steering vector equals the package's mean_difference")
