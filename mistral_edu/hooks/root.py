"""HookedRootModule: hooks(), run_with_cache and hook_names, mixed into the model (as in TransformerLens).

The hook machinery lives here so the model's own file stays about the model. The mixin needs from
the model only cfg (n_layers, n_heads), layers[i].attention, and its HookPoint modules.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

from ..names import layer_of
from .cache import ActivationCache
from .names import check_index, resolve_names
from .point import attached, hook_points
from .selection import PatternSelection


class HookedRootModule:
    """The hook API of a model: attach functions to named hook points, or run once and cache activations."""

    def name_hook_points(self) -> None:
        """Give every hook point its full name; call once, at the end of the model's __init__."""
        for name, point in hook_points(self).items():
            point.name = name

    def hook_names(self) -> list[str]:
        """Every hook point name, in the order the forward pass reaches them."""
        return list(hook_points(self))

    @contextmanager
    def hooks(self, pairs, pattern_heads: dict | None = None, pattern_rows=None):
        """Context manager: attach [(name_or_predicate, fn)]; fn(tensor, hook) returns a tensor or None.

        pattern_heads ({layer: [heads]}) and pattern_rows (a slice or list of query rows) make the
        scores and pattern hooks see only those heads and rows, computed beside the fused kernel, so
        reading a few heads of a 32k context never builds 32 heads x 32k x 32k numbers. Such hooks are
        read-only; a scores or pattern hook on a layer that pattern_heads leaves out is an error.
        """
        selections = self.pattern_selections(pattern_heads, pattern_rows)
        points = hook_points(self)
        resolved = [(_resolve_pair(points, which, fn), fn) for which, fn in pairs]
        with attached(points, resolved):
            try:
                for layer, selection in selections.items():
                    self.layers[layer].attention.pattern_selection = selection
                if pattern_heads is not None:
                    _check_unselected_layers_unhooked(points, selections)
                yield self
            finally:
                for layer in selections:
                    self.layers[layer].attention.pattern_selection = None

    def pattern_selections(self, pattern_heads: dict | None, pattern_rows) -> dict[int, PatternSelection]:
        """Validate pattern_heads / pattern_rows and turn them into one PatternSelection per layer."""
        if pattern_heads is None and pattern_rows is None:
            return {}
        rows = _check_rows(pattern_rows)
        if pattern_heads is None:
            return {layer: PatternSelection(None, rows) for layer in range(self.cfg.n_layers)}
        if not isinstance(pattern_heads, dict):
            raise TypeError(f"pattern_heads must be a dict {{layer: [heads]}}, e.g. {{3: [0, 5]}}; got {pattern_heads!r}")
        selections = {}
        for layer, heads in pattern_heads.items():
            layer = check_index(layer, self.cfg.n_layers, "layer")
            heads = [heads] if isinstance(heads, int) else list(heads)
            if not heads:
                raise ValueError(f"pattern_heads[{layer}] is empty; leave the layer out instead")
            heads = tuple(check_index(h, self.cfg.n_heads, "head") for h in heads)
            selections[layer] = PatternSelection(heads, rows)
        return selections

    def run_with_cache(self, tokens: torch.Tensor, names=None, pattern_heads: dict | None = None,
                       pattern_rows=None, device=None, names_filter=None, **forward_kwargs):
        """Run forward and keep the activations named (a list, a predicate, or None for all).

        The logits are exactly model(tokens)'s, whatever is kept. names_filter is TransformerLens's
        name for names. pattern_heads / pattern_rows: keep the scores and pattern of those heads and
        query rows only (see hooks()); with pattern_heads, layers it leaves out keep no pattern. The
        cache's pattern(layer, head) finds a head in either case. device: where to keep the captured
        tensors (e.g. "cpu" to spare GPU memory).
        """
        if names is not None and names_filter is not None:
            raise TypeError("give names= or names_filter= (TransformerLens's word for the same thing), not both")
        names = names_filter if names is None else names
        store: dict[str, torch.Tensor] = {}

        def keep(tensor, hook):
            store[hook.name] = tensor.detach().to(device) if device is not None else tensor.detach()

        selections = self.pattern_selections(pattern_heads, pattern_rows)
        selected = resolve_names(hook_points(self), names)
        if pattern_heads is not None and (names is None or callable(names)):
            selected = [n for n in selected if not _is_pattern_name(n) or layer_of(n) in selections]
        head_index = {n: selections[layer_of(n)].heads for n in selected
                      if _is_pattern_name(n) and layer_of(n) in selections
                      and selections[layer_of(n)].heads is not None}
        with self.hooks([(name, keep) for name in selected], pattern_heads, pattern_rows):
            logits = self(tokens, **forward_kwargs)
        return logits, ActivationCache(store, self.cfg.n_layers, head_index)


def _resolve_pair(points, which, fn) -> list[str]:
    """The hook point names one (name_or_predicate, fn) pair of hooks() attaches fn to."""
    if not callable(fn):
        raise TypeError(f"hook function for {which!r} is not callable")
    names = resolve_names(points, which)
    if not names:
        raise KeyError(f"the predicate {which!r} matched no hook point; list them with model.hook_names()")
    return names


def _check_unselected_layers_unhooked(points, selections: dict[int, PatternSelection]) -> None:
    for name, point in points.items():
        layer = layer_of(name)
        if _is_pattern_name(name) and point.active and layer not in selections:
            raise ValueError(f"layer {layer} has a scores or pattern hook, but pattern_heads does not list it; "
                             f"add it (e.g. pattern_heads={{{layer}: [0]}}) or hook only the listed layers")


def _is_pattern_name(name: str) -> bool:
    return name.endswith(("attention.hook_pattern", "attention.hook_attn_scores"))


def _check_rows(rows):
    """pattern_rows as a slice or a list of ints (an int keeps its row as a length-1 axis)."""
    if rows is None or isinstance(rows, slice):
        return rows
    if isinstance(rows, int):
        return slice(rows, rows + 1 if rows != -1 else None)
    if isinstance(rows, (list, tuple, range)) and rows and all(isinstance(r, int) for r in rows):
        return list(rows)
    raise TypeError(f"pattern_rows must be a slice (e.g. slice(-1, None) for the last query), an int or a "
                    f"non-empty list of ints; got {rows!r}")
