"""Naming hook points: full names, TransformerLens-style shorthand, and errors that suggest a fix."""
from __future__ import annotations

import difflib
import operator
import re

from .point import HookPoint


def check_index(value, size: int, what: str, owner: str = "the model") -> int:
    """value as an index in 0..size-1 (negative counts from the end, as in Python), or a clear error.

    what names the index ("layer", "head", "position") and owner what has size of them."""
    try:
        index = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {value!r}") from None
    if not -size <= index < size:
        raise IndexError(f"{what} {index} is out of range: {owner} has {size} {what}s (0..{size - 1})")
    return index % size


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


# TransformerLens-style shorthand -> the leaf of our full names. "ln1"/"ln2" are TL's names for the
# two norms of a block, and "scale" alone is the final norm's divisor, as TL's cache["scale"]; the rest
# are our leaves without the "hook_" prefix.
SHORTHAND = {
    "embed": "hook_embed", "ln_final": "norm.hook_normalized", "scale": "norm.hook_scale",
    "ln1": "attention_norm.hook_normalized", "ln2": "ffn_norm.hook_normalized",
    "ln1_scale": "attention_norm.hook_scale", "ln2_scale": "ffn_norm.hook_scale",
    "resid_pre": "hook_resid_pre", "resid_mid": "hook_resid_mid", "resid_post": "hook_resid_post",
    "attn_out": "hook_attn_out", "mlp_out": "hook_mlp_out",
    "q": "attention.hook_q", "k": "attention.hook_k", "v": "attention.hook_v",
    "rot_q": "attention.hook_rot_q", "rot_k": "attention.hook_rot_k", "z": "attention.hook_z",
    "attn_scores": "attention.hook_attn_scores", "scores": "attention.hook_attn_scores",
    "pattern": "attention.hook_pattern", "pre": "feed_forward.hook_pre",
    "pre_linear": "feed_forward.hook_pre_linear", "post": "feed_forward.hook_post",
}
NOT_PER_LAYER = ("embed", "ln_final", "scale")


def full_name(short: str, layer: int | None = None) -> str:
    """Expand TransformerLens-style shorthand: ("pattern", 3) -> "layers.3.attention.hook_pattern"."""
    if short not in SHORTHAND:
        close = difflib.get_close_matches(str(short), list(SHORTHAND), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise KeyError(f"unknown shorthand {short!r}; {hint}known: {', '.join(sorted(SHORTHAND))}")
    leaf = SHORTHAND[short]
    if short in NOT_PER_LAYER:
        if layer is not None:
            raise KeyError(f"{short!r} is not per layer; use cache[{short!r}]")
        return leaf
    if layer is None:
        raise KeyError(f"{short!r} is per layer; give one, e.g. cache[{short!r}, 0]")
    return f"layers.{layer}.{leaf}"
