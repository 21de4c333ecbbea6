"""Ablation: remove one component and see what changes.

Zero-ablation sets a head's output z (or a whole attention / MLP output) to zero. That can push the
model off its usual inputs, so mean-ablation instead replaces it with its mean over reference text:
the component still says "something typical", just nothing about this prompt.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..hooks import check_index
from .tokens import as_sequence

_PART_HOOK = {"attn": "hook_attn_out", "mlp": "hook_mlp_out"}


def _check_how(how: str) -> None:
    if how not in ("zero", "mean"):
        raise ValueError(f"how must be 'zero' or 'mean', got {how!r}")


@torch.no_grad()
def _means(model, names: list[str], reference) -> dict[str, torch.Tensor]:
    """Mean of each named activation over the batch and positions of the reference tokens."""
    _, cache = model.run_with_cache(as_sequence(model, reference), names=names)
    return {name: cache[name].mean(dim=(0, 1)) for name in names}                # (...trailing dims)


def head_ablation_hooks(model, heads, how: str = "zero", reference=None) -> list[tuple[str, Callable]]:
    """Hook pairs that ablate heads [(layer, head), ...]: their z becomes 0 or its reference mean.

    Use them with model.hooks(...) to combine with other hooks; ablate_heads runs them for you.
    """
    _check_how(how)
    heads = [heads] if isinstance(heads, tuple) else list(heads)
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        layer = check_index(layer, model.cfg.n_layers, "layer")
        by_layer.setdefault(layer, []).append(check_index(head, model.cfg.n_heads, "head"))
    names = {layer: f"layers.{layer}.attention.hook_z" for layer in by_layer}
    if how == "mean" and reference is None:
        raise ValueError("mean-ablation needs reference tokens to average over, e.g. reference=tokens")
    means = _means(model, list(names.values()), reference) if how == "mean" else {}

    def ablate(z, hook):
        z = z.clone()                                                            # (batch, seq, n_heads, head_dim)
        for head in by_layer[hook.layer]:
            z[:, :, head] = means[hook.name][head] if how == "mean" else 0
        return z

    return [(names[layer], ablate) for layer in by_layer]


def layer_ablation_hooks(model, layer: int, part: str = "attn", how: str = "zero",
                         reference=None) -> list[tuple[str, Callable]]:
    """Hook pairs that ablate a whole attention ('attn') or MLP ('mlp') output of one layer."""
    _check_how(how)
    if part not in _PART_HOOK:
        raise ValueError(f"part must be 'attn' or 'mlp', got {part!r}")
    layer = check_index(layer, model.cfg.n_layers, "layer")
    name = f"layers.{layer}.{_PART_HOOK[part]}"
    if how == "mean" and reference is None:
        raise ValueError("mean-ablation needs reference tokens to average over, e.g. reference=tokens")
    mean = _means(model, [name], reference)[name] if how == "mean" else None

    def ablate(out, hook):
        return torch.zeros_like(out) if mean is None else mean.expand_as(out).clone()  # (batch, seq, dim)

    return [(name, ablate)]


@torch.no_grad()
def ablate_heads(model, tokens, heads, how: str = "zero", reference=None) -> torch.Tensor:
    """Logits (1, seq, vocab) with heads [(layer, head), ...] (or one pair) ablated."""
    with model.hooks(head_ablation_hooks(model, heads, how, reference)):
        return model(as_sequence(model, tokens))


@torch.no_grad()
def ablate_layer(model, tokens, layer: int, part: str = "attn", how: str = "zero", reference=None) -> torch.Tensor:
    """Logits (1, seq, vocab) with one layer's attention or MLP output ablated."""
    with model.hooks(layer_ablation_hooks(model, layer, part, how, reference)):
        return model(as_sequence(model, tokens))


@torch.no_grad()
def head_ablation_effects(model, tokens, metric: Callable, how: str = "zero", reference=None) -> torch.Tensor:
    """(n_layers, n_heads): metric(ablated logits) - metric(clean logits), one head at a time.

    metric maps logits (1, seq, vocab) to a number, e.g. logit_difference(correct, wrong).
    """
    tokens = as_sequence(model, tokens)
    clean = float(metric(model(tokens)))
    effects = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):
            effects[layer, head] = float(metric(ablate_heads(model, tokens, (layer, head), how, reference))) - clean
    return effects


def direction_ablation_hooks(layer: int, direction: torch.Tensor, value: float | torch.Tensor,
                             point: str = "hook_resid_post") -> list[tuple[str, Callable]]:
    """[(name, fn)] that mean-ablates one direction of layers.{layer}.{point}: every position's component
    along it is set to `value` (its mean over reference text), the rest of the vector left as it was.

    direction (dim,) or one per row (batch, 1, dim) is normalised here; value is a number or one per row
    (batch, 1, 1). Setting the component to its
    mean, not to 0, removes what it says about this text without moving the stream off its usual range.
    BOS is left alone, as steering_hooks does: every text shares it.
    """
    def ablate(x, hook):                                                           # x: (batch, seq, dim)
        unit = (direction / direction.norm(dim=-1, keepdim=True)).to(x)           # (dim,) or (batch, 1, dim)
        rest = x[:, 1:]                                                            # (batch, seq - 1, dim)
        along = (rest * unit).sum(-1, keepdim=True)                                # (batch, seq - 1, 1)
        return torch.cat([x[:, :1], rest + (torch.as_tensor(value).to(x) - along) * unit], dim=1)
    return [(f"layers.{layer}.{point}", ablate)]
