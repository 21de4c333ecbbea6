"""The scores and pattern hooks of attention: computed beside the fused kernel, honoured when replaced.

The fused kernel never builds the (queries, keys) matrices, so a hook on hook_attn_scores or
hook_pattern gets them computed on the side while the output still comes from the kernel: caching
them changes no logit. Only when a hook replaces them (returns another tensor or edits them in place)
is the output recomputed from the replacement by the explicit path.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .point import HookPoint, call_and_check_replaced


@dataclass(frozen=True)
class PatternSelection:
    """The heads and query rows a pattern hook sees, so a long context never builds every (q, k) matrix.

    heads: query head indices (None: all). rows: a slice or a list of query rows of the forward call
    (None: all; slice(-1, None): the last one). Hooks on a selection may read but not replace.
    """

    heads: tuple[int, ...] | None = None
    rows: slice | list[int] | None = None


class AttentionHooks:
    """Mixed into model.attention.Attention, which provides the hook points and the explicit maths:
    scores(q, k, span, heads, rows), pattern(scores) and mix_values(pattern, v)."""

    pattern_selection: PatternSelection | None = None

    @property
    def wants_pattern(self) -> bool:
        """Whether anything is attached to the scores or pattern hook points."""
        return self.hook_attn_scores.active or self.hook_pattern.active

    def through_pattern_hooks(self, q, k, v, span, z: torch.Tensor) -> torch.Tensor:
        """Show the hooks the scores and pattern; z unchanged unless a hook replaced one of them."""
        selection = self.pattern_selection or PatternSelection()
        rows = slice(None) if selection.rows is None else selection.rows
        scores = self.scores(q, k, span, selection.heads, rows)                   # (batch, n_sel, rows, keys)
        scores, replaced = call_and_check_replaced(self.hook_attn_scores, scores)
        self._check_editable(self.hook_attn_scores, replaced)
        if not (replaced or self.hook_pattern.active):
            return z
        pattern = self.pattern(scores)                                            # (batch, n_sel, rows, keys)
        pattern, replaced_pattern = call_and_check_replaced(self.hook_pattern, pattern)
        self._check_editable(self.hook_pattern, replaced_pattern)
        if not (replaced or replaced_pattern):
            return z
        return self.mix_values(pattern, v)                                        # (batch, q, n_heads, head_dim)

    def _check_editable(self, point: HookPoint, replaced: bool) -> None:
        if replaced and self.pattern_selection is not None:
            raise ValueError(f"a hook on {point.name} replaced its tensor, but with pattern_heads or "
                             "pattern_rows the pattern is read-only (the output comes from the fused kernel); "
                             "hook the full pattern, without a selection, to edit it")
