"""Which heads and query rows the scores and pattern hooks see, so a long context never builds them all."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PatternSelection:
    """The heads and query rows a pattern hook sees, so a long context never builds every (q, k) matrix.

    heads: query head indices (None: all). rows: a slice or a list of query rows of the forward call
    (None: all; slice(-1, None): the last one). Hooks on a selection may read but not replace: the
    output comes from the fused kernel, which the few rows built here cannot stand in for.
    """

    heads: tuple[int, ...] | None = None
    rows: slice | list[int] | None = None

    @property
    def row_index(self) -> slice | list[int]:
        """rows as an index into the query axis (every row when None)."""
        return slice(None) if self.rows is None else self.rows
