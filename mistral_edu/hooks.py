"""Named hook points, the hooks() context and the activation cache.

The idea is TransformerLens's: every activation worth looking at passes through an identity module
with a name. Unlike there, an idle hook point is a plain attribute check, so a model nobody hooks
runs the same arithmetic at the same speed as one without hook points at all.
"""
from __future__ import annotations

import difflib
import re
from contextlib import contextmanager
from typing import Callable, Iterable

import torch
from torch import nn

HookFn = Callable[[torch.Tensor, "HookPoint"], "torch.Tensor | None"]
NameFilter = "str | Callable[[str], bool]"


class HookPoint(nn.Module):
    """An identity on a tensor that calls the functions attached to it, in order."""

    def __init__(self):
        super().__init__()
        self.name = ""
        self.fns: list[HookFn] = []

    @property
    def layer(self) -> int | None:
        """The block index this hook point lives in, or None outside the blocks."""
        match = re.match(r"layers\.(\d+)\.", self.name)
        return int(match.group(1)) if match else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # Bypasses nn.Module.__call__: an unhooked point must cost one list check, nothing more.
        if not self.fns:
            return x
        for fn in self.fns:
            out = fn(x, self)
            if out is not None:
                _check_replacement(self.name, x, out)
                x = out
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)

    def extra_repr(self) -> str:
        return self.name


def _check_replacement(name: str, old: torch.Tensor, new) -> None:
    if not isinstance(new, torch.Tensor):
        raise TypeError(f"hook on {name} returned {type(new).__name__}; return a tensor or None")
    if new.shape != old.shape or new.dtype != old.dtype:
        raise ValueError(
            f"hook on {name} returned shape {tuple(new.shape)} {new.dtype}, but the activation is "
            f"{tuple(old.shape)} {old.dtype}; return a tensor of the same shape and dtype (or None)")


def hook_points(model: nn.Module) -> dict[str, HookPoint]:
    """Every hook point of a model by its full name, in forward order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, HookPoint)}


def resolve_names(points: dict[str, HookPoint], which) -> list[str]:
    """Turn a name, a list of names, or a predicate into hook point names; unknown names are errors."""
    if which is None:
        return list(points)
    if callable(which):
        return [n for n in points if which(n)]
    if isinstance(which, str):
        which = [which]
    names = []
    for name in which:
        if name not in points:
            close = difflib.get_close_matches(name, list(points), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else "; list them with model.hook_names()"
            raise KeyError(f"no hook point named {name!r}{hint}")
        names.append(name)
    return names


@contextmanager
def attached(model: nn.Module, pairs: Iterable[tuple]):
    """Attach (name_or_predicate, fn) pairs for the duration of a with-block, always removing them."""
    points = hook_points(model)
    added: list[tuple[HookPoint, HookFn]] = []
    try:
        for which, fn in pairs:
            if not callable(fn):
                raise TypeError(f"hook function for {which!r} is not callable")
            names = resolve_names(points, which)
            if not names:
                raise KeyError(f"the predicate {which!r} matched no hook point")
            for name in names:
                points[name].fns.append(fn)
                added.append((points[name], fn))
        yield model
    finally:
        for point, fn in added:
            point.fns.remove(fn)


# TransformerLens-style shorthand -> the leaf of our full names. "ln1"/"ln2" are TL's names for the
# two norms of a block; the rest are our leaves without the "hook_" prefix.
_SHORTHAND = {
    "embed": "hook_embed", "ln_final": "norm.hook_normalized",
    "ln1": "attention_norm.hook_normalized", "ln2": "ffn_norm.hook_normalized",
    "resid_pre": "hook_resid_pre", "resid_mid": "hook_resid_mid", "resid_post": "hook_resid_post",
    "attn_out": "hook_attn_out", "mlp_out": "hook_mlp_out",
    "q": "attention.hook_q", "k": "attention.hook_k", "v": "attention.hook_v",
    "rot_q": "attention.hook_rot_q", "rot_k": "attention.hook_rot_k", "z": "attention.hook_z",
    "attn_scores": "attention.hook_attn_scores", "scores": "attention.hook_attn_scores",
    "pattern": "attention.hook_pattern", "pre": "feed_forward.hook_pre",
    "pre_linear": "feed_forward.hook_pre_linear", "post": "feed_forward.hook_post",
}


def full_name(short: str, layer: int | None = None) -> str:
    """Expand TransformerLens-style shorthand: ("pattern", 3) -> "layers.3.attention.hook_pattern"."""
    if short not in _SHORTHAND:
        raise KeyError(f"unknown shorthand {short!r}; known: {', '.join(sorted(_SHORTHAND))}")
    leaf = _SHORTHAND[short]
    if short in ("embed", "ln_final"):
        if layer is not None:
            raise KeyError(f"{short!r} is not per layer; use cache[{short!r}]")
        return leaf
    if layer is None:
        raise KeyError(f"{short!r} is per layer; give one, e.g. cache[{short!r}, 0]")
    return f"layers.{layer}.{leaf}"


class ActivationCache:
    """Activations captured by run_with_cache, indexable by full name or (shorthand, layer)."""

    def __init__(self, store: dict[str, torch.Tensor], n_layers: int):
        self._store = store
        self.n_layers = n_layers

    def _key(self, key) -> str:
        if isinstance(key, tuple):
            short, layer = key
            if not -self.n_layers <= layer < self.n_layers:
                raise IndexError(f"layer {layer} out of range: the model has {self.n_layers} layers")
            key = full_name(short, layer % self.n_layers)
        elif key not in self._store and key in _SHORTHAND:
            key = full_name(key)
        if key not in self._store:
            close = difflib.get_close_matches(key, list(self._store), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise KeyError(f"{key!r} was not captured{hint} (pass it in names= to run_with_cache)")
        return key

    def __getitem__(self, key) -> torch.Tensor:
        return self._store[self._key(key)]

    def __contains__(self, key) -> bool:
        try:
            self._key(key)
        except (KeyError, IndexError):
            return False
        return True

    def __len__(self) -> int:
        return len(self._store)

    def __iter__(self):
        return iter(self._store)

    def keys(self):
        return self._store.keys()

    def items(self):
        return self._store.items()

    def to(self, *args, **kwargs) -> "ActivationCache":
        """A copy with every tensor moved or cast, as Tensor.to."""
        return ActivationCache({k: v.to(*args, **kwargs) for k, v in self._store.items()}, self.n_layers)

    def nbytes(self) -> int:
        """Bytes held by the captured tensors."""
        return sum(t.numel() * t.element_size() for t in self._store.values())

    def __repr__(self) -> str:
        return f"ActivationCache({len(self)} activations, {self.nbytes() / 2**20:.2f} MiB)"
