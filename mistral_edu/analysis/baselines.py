"""What a head score would be if the head read nothing in particular: the yardstick every score needs."""
from __future__ import annotations

import math


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


def _check_seq(seq: int) -> None:
    if not isinstance(seq, int) or seq < 2:
        raise ValueError(f"seq must be an integer of at least 2 (the prompt's length in tokens), got {seq!r}")


def uniform_position_baseline(seq: int) -> float:
    """The first-token (sink) or previous-token score of a head that spreads its attention evenly.

    Both scores average one attention weight over the queries i = 1 .. seq - 1; an even causal head gives
    each of the i + 1 keys that query i sees 1 / (i + 1). So the baseline is the mean of 1 / (i + 1): a
    head is a sink or previous-token head only well above it.
    """
    _check_seq(seq)
    return sum(1 / (i + 1) for i in range(1, seq)) / (seq - 1)


def uniform_entropy(seq: int) -> float:
    """The mean attention entropy (nats) of a head that spreads evenly: the largest head_entropy can be.

    Query i spreads over i + 1 keys, entropy log(i + 1); head_entropy averages over every query i = 0 .. seq - 1.
    """
    _check_seq(seq)
    return sum(math.log(i + 1) for i in range(seq)) / seq
