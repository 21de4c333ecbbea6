"""What a head score would be if the head read nothing in particular: the yardstick every score needs."""
from __future__ import annotations


def uniform_baseline(span: int) -> float:
    """The induction (or duplicate-token) score of a head that spreads its attention evenly.

    On repeated_random_tokens(span) sequences (BOS, span tokens, the same span again) the scores average
    the attention that each second-half query puts on one key. A causal head that attends uniformly gives
    each of the keys it can see an equal share: the query at position 1 + span + i sees 2 + span + i keys.
    So the baseline is the mean of 1 / (span + 2 + i) over i = 0 .. span - 1 (0.033 for span 20), not
    1 / span: a score is only evidence of induction well above this.
    """
    if not isinstance(span, int) or span < 1:
        raise ValueError(f"span must be a positive integer (the length of the repeated block), got {span!r}")
    return sum(1 / (span + 2 + i) for i in range(span)) / span
