"""Named hook points, the hooks() context and the activation cache.

The idea is TransformerLens's: every activation worth looking at passes through an identity module
with a name. Unlike there, an idle hook point is a plain attribute check, so a model nobody hooks
runs the same arithmetic at the same speed as one without hook points at all.
"""
from __future__ import annotations

import difflib
import math
import operator
import re
from contextlib import contextmanager
from typing import Callable, Iterable

import torch
from torch import nn

from .names import layer_of

HookFn = Callable[[torch.Tensor, "HookPoint"], "torch.Tensor | None"]
NameFilter = "str | tuple[str, int] | Callable[[str], bool]"


class HookPoint(nn.Module):
    """An identity on a tensor that calls the functions attached to it, in order."""

    def __init__(self):
        super().__init__()
        self.name = ""
        self.fns: list[HookFn] = []

    @property
    def layer(self) -> int | None:
        """The block index this hook point lives in, or None outside the blocks."""
        return layer_of(self.name)

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
    if new.device != old.device:
        raise ValueError(f"hook on {name} returned a tensor on {new.device}, but the activation is on "
                         f"{old.device}; move it with .to({str(old.device)!r})")


def check_index(value, size: int, what: str) -> int:
    """value as an index in 0..size-1 (negative counts from the end, as in Python), or a clear error."""
    try:
        index = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {value!r}") from None
    if not -size <= index < size:
        raise IndexError(f"{what} {index} is out of range: the model has {size} {what}s (0..{size - 1})")
    return index % size


def hook_points(model: nn.Module) -> dict[str, HookPoint]:
    """Every hook point of a model by its full name, in forward order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, HookPoint)}


def _count_layers(points: dict[str, HookPoint]) -> int:
    layers = [p.layer for p in points.values() if p.layer is not None]
    return max(layers) + 1 if layers else 0


def _unknown_name_error(points: dict[str, HookPoint], name: str) -> Exception:
    """The most helpful error for a name that is not a hook point."""
    n_layers = _count_layers(points)
    match = re.match(r"layers\.(-?\d+)\.(.*)", name)
    if match and not 0 <= int(match.group(1)) < n_layers:
        return IndexError(f"no hook point named {name!r}: layer {match.group(1)} is out of range, the model "
                          f"has {n_layers} layers (0..{n_layers - 1})")
    in_layer_0 = [n for n in points if n.startswith("layers.0.") and n.endswith("." + name)]
    if in_layer_0:
        return KeyError(f"{name!r} exists in every layer: name one, e.g. {in_layer_0[0]!r}, use the "
                        f"shorthand ({name.split('hook_')[-1]!r}, 0), or a predicate such as "
                        f"lambda n: n.endswith({name!r})")
    close = difflib.get_close_matches(name, list(points), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; list them with model.hook_names()"
    return KeyError(f"no hook point named {name!r}{hint}")


def resolve_names(points: dict[str, HookPoint], which) -> list[str]:
    """Turn a name, a (shorthand, layer) pair, a list of those, or a predicate into hook point names.

    Unknown names are errors that suggest the closest valid ones.
    """
    if which is None:
        return list(points)
    if callable(which):
        return [n for n in points if which(n)]
    if isinstance(which, (str, tuple)):
        which = [which]
    names = []
    for name in which:
        if isinstance(name, tuple):
            short, layer = name
            name = full_name(short, check_index(layer, _count_layers(points), "layer"))
        if name not in points:
            raise _unknown_name_error(points, name)
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
                raise KeyError(f"the predicate {which!r} matched no hook point; list them with model.hook_names()")
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
        close = difflib.get_close_matches(str(short), list(_SHORTHAND), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise KeyError(f"unknown shorthand {short!r}; {hint}known: {', '.join(sorted(_SHORTHAND))}")
    leaf = _SHORTHAND[short]
    if short in ("embed", "ln_final"):
        if layer is not None:
            raise KeyError(f"{short!r} is not per layer; use cache[{short!r}]")
        return leaf
    if layer is None:
        raise KeyError(f"{short!r} is per layer; give one, e.g. cache[{short!r}, 0]")
    return f"layers.{layer}.{leaf}"


def activation_shapes(cfg, batch: int, q_len: int, k_len: int | None = None) -> dict[str, tuple[int, ...]]:
    """The shape every hook point sees, by full name: DESIGN.md's table, computed from a config.

    q_len is the number of new positions in the forward call, k_len the number of keys attention reads
    (q_len without a KV cache; every cached position with one).
    """
    k_len = q_len if k_len is None else k_len
    resid = (batch, q_len, cfg.dim)
    per_layer = {
        "hook_resid_pre": resid, "attention_norm.hook_normalized": resid,
        "attention.hook_q": (batch, q_len, cfg.n_heads, cfg.head_dim),
        "attention.hook_k": (batch, q_len, cfg.n_kv_heads, cfg.head_dim),
        "attention.hook_v": (batch, q_len, cfg.n_kv_heads, cfg.head_dim),
        "attention.hook_rot_q": (batch, q_len, cfg.n_heads, cfg.head_dim),
        "attention.hook_rot_k": (batch, q_len, cfg.n_kv_heads, cfg.head_dim),
        "attention.hook_attn_scores": (batch, cfg.n_heads, q_len, k_len),
        "attention.hook_pattern": (batch, cfg.n_heads, q_len, k_len),
        "attention.hook_z": (batch, q_len, cfg.n_heads, cfg.head_dim),
        "hook_attn_out": resid, "hook_resid_mid": resid, "ffn_norm.hook_normalized": resid,
        "feed_forward.hook_pre": (batch, q_len, cfg.hidden_dim),
        "feed_forward.hook_pre_linear": (batch, q_len, cfg.hidden_dim),
        "feed_forward.hook_post": (batch, q_len, cfg.hidden_dim),
        "hook_mlp_out": resid, "hook_resid_post": resid,
    }
    shapes = {"hook_embed": resid}
    for layer in range(cfg.n_layers):
        shapes.update({f"layers.{layer}.{leaf}": shape for leaf, shape in per_layer.items()})
    shapes["norm.hook_normalized"] = resid
    return shapes


def full_cache_bytes(cfg, seq: int, batch: int = 1, bytes_per_value: int = 2) -> int:
    """Bytes a run_with_cache of every hook point would hold (bf16: 2 bytes per value).

    The two (q, k) tensors per layer, scores and pattern, grow with seq**2 and dominate long contexts.
    """
    return bytes_per_value * sum(math.prod(s) for s in activation_shapes(cfg, batch, seq).values())


class ActivationCache:
    """Activations captured by run_with_cache, indexable by full name or (shorthand, layer).

    head_index maps the name of a pattern or scores captured for a few heads only (run_with_cache's
    pattern_heads) to the heads it holds, in order, so pattern(layer, head) finds them.
    """

    def __init__(self, store: dict[str, torch.Tensor], n_layers: int,
                 head_index: dict[str, tuple[int, ...]] | None = None):
        self._store = store
        self.n_layers = n_layers
        self.head_index = head_index or {}

    def _key(self, key) -> str:
        if isinstance(key, tuple):
            short, layer = key
            key = full_name(short, check_index(layer, self.n_layers, "layer"))
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

    def pattern(self, layer: int, head: int, batch: int = 0) -> torch.Tensor:
        """One head's (query rows, keys) attention pattern, whether all heads or a few were captured."""
        name = self._key(("pattern", layer))
        pattern = self._store[name]                                # (batch, heads kept, rows kept, keys)
        kept = self.head_index.get(name)
        if kept is None:
            return pattern[batch, head]                            # (rows kept, keys)
        if head not in kept:
            raise KeyError(f"head {head} of layer {layer} was not captured: pattern_heads kept {list(kept)}")
        return pattern[batch, kept.index(head)]                    # (rows kept, keys)

    def stack(self, short: str) -> torch.Tensor:
        """One activation of every layer stacked: cache.stack("resid_post") is (n_layers, batch, seq, dim)."""
        return torch.stack([self[short, layer] for layer in range(self.n_layers)])

    def to(self, *args, **kwargs) -> "ActivationCache":
        """A copy with every tensor moved or cast, as Tensor.to."""
        moved = {k: v.to(*args, **kwargs) for k, v in self._store.items()}
        return ActivationCache(moved, self.n_layers, self.head_index)

    def nbytes(self) -> int:
        """Bytes held by the captured tensors."""
        return sum(t.numel() * t.element_size() for t in self._store.values())

    def __repr__(self) -> str:
        return f"ActivationCache({len(self)} activations, {self.nbytes() / 2**20:.2f} MiB)"
