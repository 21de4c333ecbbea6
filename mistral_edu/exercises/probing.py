"""Probing and steering exercises (notebook 12): a probe's balanced accuracy, a probe with its control, and a
steering vector.

The references are mistral_edu.analysis's balanced_accuracy and mean_difference, the functions the
lesson's curves are computed with. The inputs are imbalanced on purpose: with equal classes plain
accuracy and balanced accuracy agree, and so do a difference of sums and of means.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..analysis.probing import balanced_accuracy
from ..analysis.steering import mean_difference
from .catalogue import Exercise, register
from .verdict import Case, Verdict, WrongAnswer, as_number, check, judge_numbers, judge_tensors

__all__ = ["check_balanced_accuracy", "check_mean_difference", "check_probe_with_control"]

BALANCED_ACCURACY = register(Exercise(
    name="balanced_accuracy", notebook="12", difficulty=1, minutes=10,
    task="write balanced_accuracy(logits, labels): a probe predicts label 1 where its logit is > 0; return, as a "
         "float, the mean over the two classes of the share of that class's examples predicted right",
    hints=("with 3 Bible tokens for every Jargon token, always answering 'Bible' is 75% accurate and has learnt "
           "nothing; averaging the two classes' hit rates puts chance at 50% whatever the mix",
           "turn the logits into predictions (strictly positive means label 1); for each class on its own, the "
           "share of its rows predicted right; average the two shares"),
    solution='''def balanced_accuracy(logits, labels):
    predicted = (logits > 0).long()
    hits = [(predicted[labels == c] == c).float().mean() for c in (0, 1)]
    return float(sum(hits) / 2)''',
))

MEAN_DIFFERENCE = register(Exercise(
    name="mean_difference", notebook="12", difficulty=1, minutes=10,
    task="write mean_difference(x, labels): for residual vectors x (n, dim) and 0/1 labels (n,), the mean of the "
         "rows labelled 1 minus the mean of the rows labelled 0, a (dim,) steering vector",
    hints=("the steering vector points from the average label-0 residual to the average label-1 residual: adding"
           " it moves a label-0 text's residuals toward label 1",
           "select the rows of each class with the labels, average each class over its rows, and subtract in the"
           " direction that points toward label 1"),
    solution='''def mean_difference(x, labels):
    return x[labels == 1].mean(0) - x[labels == 0].mean(0)        # (dim,)''',
))


def _cases() -> list[Case]:
    """Two imbalanced sets (3 to 1 each way), each with a logit of exactly 0 and logits in (0, 0.5)."""
    labels = torch.tensor([0] * 12 + [1] * 4)
    logits = torch.tensor([-2.0, -1.0, -0.5, -3.0, -1.5, 0.0, -0.7, -2.5, 0.3, 0.4, 1.0, 2.0,    # 0s: 8 of 12 right
                           0.2, 0.1, 1.5, -0.3])                                                   # 1s: 3 of 4 right
    labels2 = torch.tensor([1, 0, 1, 1, 1, 0, 1, 1, 1, 0, 1, 1])
    logits2 = torch.tensor([0.4, -1.0, 0.0, 2.0, 0.1, 0.2, -0.6, 1.2, 0.3, -0.1, 0.05, 3.0])      # 1s: 6 of 9, 0s: 2 of 3
    return [Case(f"{len(y)} examples, {int(y.sum())} labelled 1", (g, y), balanced_accuracy(g, y))
            for g, y in [(logits, labels), (logits2, labels2)]]


def _hit_rate(logits: torch.Tensor, labels: torch.Tensor, c: int, threshold: float = 0.0, inclusive: bool = False
              ) -> float:
    predicted = (logits >= threshold) if inclusive else (logits > threshold)
    return float((predicted[labels == c].long() == c).float().mean())


def _flipped(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Balanced accuracy of the flipped prediction, label 1 where the logit is < 0."""
    return (_hit_rate(-logits, labels, 0) + _hit_rate(-logits, labels, 1)) / 2


BALANCED_ACCURACY_SLIPS = {
    "that is the plain accuracy over all examples; with 3 rows of one label for every row of the other it is pulled "
    "toward the majority class: average the two classes' hit rates instead":
        lambda c: float(((c.args[0] > 0).long() == c.args[1]).float().mean()),
    "you thresholded at 0.5: these are logits, not probabilities, so label 1 is predicted where logit > 0":
        lambda c: (_hit_rate(*c.args, 0, 0.5) + _hit_rate(*c.args, 1, 0.5)) / 2,
    "a logit of exactly 0 predicts label 0: label 1 is predicted where the logit is strictly > 0":
        lambda c: (_hit_rate(*c.args, 0, inclusive=True) + _hit_rate(*c.args, 1, inclusive=True)) / 2,
    "your predictions are flipped: a positive logit means label 1": lambda c: _flipped(*c.args),
    "your predictions are flipped (a positive logit means label 1), and a logit of exactly 0 predicts label 0":
        lambda c: 1 - c.expected,
    "that is the hit rate of label 1 alone (the recall): average it with label 0's hit rate":
        lambda c: _hit_rate(*c.args, 1),
    "that is the hit rate of label 0 alone: average it with label 1's hit rate": lambda c: _hit_rate(*c.args, 0),
}


def check_balanced_accuracy(fn: Callable[[torch.Tensor, torch.Tensor], float] | None) -> Verdict:
    """fn(logits, labels) -> the balanced accuracy of the prediction logit > 0."""
    cases = _cases()

    def verify(fn) -> str | None:
        return judge_numbers(fn, cases, BALANCED_ACCURACY_SLIPS, rel_tol=1e-6, what="the balanced accuracy",
                             show="{:.4f}".format)

    plain = BALANCED_ACCURACY_SLIPS[next(iter(BALANCED_ACCURACY_SLIPS))](cases[0])
    return check(BALANCED_ACCURACY, fn, verify,
                 f"balanced accuracy {cases[0].expected:.4f}; the plain accuracy here would be {plain:.4f}")


MEAN_DIFFERENCE_SLIPS = {
    "the sign is reversed: label 1's mean minus label 0's, so adding the vector moves toward label 1":
        lambda c: -c.expected,
    "you subtracted sums, not means: the class with more rows then dominates; divide each sum by its own count":
        lambda c: c.extra["ones"].sum(0) - c.extra["zeros"].sum(0),
    "you subtracted the mean of ALL rows, not the mean of label 0's rows":
        lambda c: c.extra["ones"].mean(0) - c.args[0].mean(0),
    "you averaged over the features (dim -1) instead of over the rows (dim 0): the vector has one entry per "
    "feature": lambda c: c.extra["ones"].mean(-1).mean() - c.extra["zeros"].mean(-1).mean() + torch.zeros(()),
    "you normalised the vector to length 1: the lesson's scales are in units of the raw difference":
        lambda c: c.expected / c.expected.norm(),
}


def check_mean_difference(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None) -> Verdict:
    """fn(x, labels) equal to the package's mean_difference on two sets imbalanced in opposite ways."""
    generator = torch.Generator().manual_seed(12)
    cases = []
    for n, ones, dim in [(12, 3, 6), (10, 7, 4)]:
        labels = torch.tensor([0] * (n - ones) + [1] * ones)[torch.randperm(n, generator=generator)]     # (n,)
        x = torch.randn(n, dim, generator=generator) + 2 * labels[:, None]                              # (n, dim)
        cases.append(Case(f"x ({n}, {dim}) with {ones} rows labelled 1", (x, labels), mean_difference(x, labels),
                          {"ones": x[labels == 1], "zeros": x[labels == 0]}))

    def verify(fn) -> str | None:
        return judge_tensors(fn, cases, MEAN_DIFFERENCE_SLIPS)

    return check(MEAN_DIFFERENCE, fn, verify, "your steering vector equals the package's mean_difference")


PROBE_WITH_CONTROL = register(Exercise(
    name="probe_with_control", notebook="12", difficulty=2, minutes=20,
    task="write probe_with_control(train_x, train_y, test_x, test_y, control_train_y, control_test_y) -> (accuracy, "
         "control_accuracy): the test balanced accuracy of a mean-difference probe (direction: class-1 mean minus "
         "class-0 mean of the training rows; label 1 where the projection is above the midpoint of the two class "
         "means' projections), fitted and tested once on the real labels and once on the control labels",
    hints=("a probe's accuracy alone does not say the model represents the label: a control task (labels that follow "
           "the token ids, not the property) shows how much a probe of this size can memorise; the gap between the "
           "two is the selectivity",
           "write the probe once as a small function of training rows and labels that returns its predictions on "
           "the test rows (direction from the two class means, threshold halfway between them), score it with "
           "balanced accuracy on the test rows, and call it with the real labels and with the control labels"),
    solution='''def probe_with_control(train_x, train_y, test_x, test_y, control_train_y, control_test_y):
    def accuracy(train_labels, test_labels):
        ones, zeros = train_x[train_labels == 1].mean(0), train_x[train_labels == 0].mean(0)   # (dim,) each
        direction = ones - zeros
        threshold = (ones + zeros) @ direction / 2              # halfway between the two means' projections
        logits = test_x @ direction - threshold                 # (n_test,): > 0 predicts label 1
        return balanced_accuracy(logits, test_labels)
    return accuracy(train_y, test_y), accuracy(control_train_y, control_test_y)''',
))


def _probe_logits(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, midpoint: str = "classes",
                  sign: float = 1.0) -> torch.Tensor:
    """Logits on test_x of the mean-difference probe fitted on (train_x, train_y); midpoint 'classes', 'rows' or 'zero'."""
    ones, zeros = train_x[train_y == 1].mean(0), train_x[train_y == 0].mean(0)           # (dim,) each
    direction = sign * (ones - zeros)                                                     # (dim,)
    threshold = {"classes": (ones + zeros) @ direction / 2, "rows": train_x.mean(0) @ direction, "zero": 0.0}[midpoint]
    return test_x @ direction - threshold                                                  # (n_test,)


def probe_with_control(train_x, train_y, test_x, test_y, control_train_y, control_test_y, midpoint: str = "classes",
                       on_train: bool = False, score=balanced_accuracy, control_tested_on_real: bool = False,
                       sign: float = 1.0) -> torch.Tensor:
    """(accuracy, control accuracy) of the mean-difference probe, with one choice changeable for the slips."""
    eval_x = train_x if on_train else test_x

    def accuracy(fit_y, eval_y):
        return score(_probe_logits(train_x, fit_y, eval_x, midpoint, sign), eval_y)

    real_eval, control_eval = (train_y, control_train_y) if on_train else (test_y, control_test_y)
    control = accuracy(control_train_y, real_eval if control_tested_on_real else control_eval)
    return torch.tensor([accuracy(train_y, real_eval), control], dtype=torch.float64)


def _plain_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float(((logits > 0).long() == labels).float().mean())


PROBE_SLIPS = {
    "those are training accuracies: a probe is scored on the held-out test rows":
        lambda c: probe_with_control(*c.args, on_train=True),
    "the threshold is 0: the probe's cut sits halfway between the two class means' projections":
        lambda c: probe_with_control(*c.args, midpoint="zero"),
    "the threshold is the projection of the mean of ALL training rows; with imbalanced classes that is not halfway "
    "between the two class means": lambda c: probe_with_control(*c.args, midpoint="rows"),
    "that is plain accuracy, pulled toward the majority class: score with balanced accuracy":
        lambda c: probe_with_control(*c.args, score=_plain_accuracy),
    "the control probe was scored against the real test labels: a control is fitted AND tested on control labels":
        lambda c: probe_with_control(*c.args, control_tested_on_real=True),
    "your direction points from label 1 to label 0: class 1's mean minus class 0's":
        lambda c: probe_with_control(*c.args, sign=-1.0),
}


def _probe_case(seed: int, n: int, dim: int, ones: float, label: str) -> Case:
    """Imbalanced rows with a real signal on the label, and control labels drawn per 'token id'."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) < ones).long()                                       # (n,)
    ids = torch.randint(0, 12, (n,), generator=g)                                        # (n,): pretend token ids
    control = (torch.rand(12, generator=g) < 0.5).long()[ids]                            # (n,): a label per id
    x = torch.randn(n, dim, generator=g, dtype=torch.float64) + 0.8 * y[:, None] + 0.3 * ids[:, None].double() / 12
    split = n * 2 // 3
    args = (x[:split], y[:split], x[split:], y[split:], control[:split], control[split:])
    return Case(label, args, probe_with_control(*args))


def check_probe_with_control(fn: Callable[..., tuple[float, float]] | None) -> Verdict:
    """fn(train_x, train_y, test_x, test_y, control_train_y, control_test_y) -> (accuracy, control_accuracy)."""
    cases = [_probe_case(31, 90, 6, 0.25, "90 rows of dim 6, a quarter labelled 1"),
             _probe_case(32, 60, 4, 0.7, "60 rows of dim 4, 70% labelled 1")]

    def pair(value) -> torch.Tensor:
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise WrongAnswer(f"return two numbers, (accuracy, control_accuracy); got {type(value).__name__}")
        return torch.tensor([float(as_number(v, "two numbers")) for v in value], dtype=torch.float64)

    def verify(fn) -> str | None:
        return judge_tensors(fn, cases, PROBE_SLIPS, atol=1e-6, convert=pair)

    return check(PROBE_WITH_CONTROL, fn, verify, "the probe and its control, scored as lesson 12 scores them")
