"""HookPoint: an identity on a tensor, with a name, that calls the functions attached to it.

The idea is TransformerLens's: every activation worth looking at passes through an identity module
with a name. Unlike there, an idle hook point is three attribute checks, so a model nobody hooks runs
the same arithmetic at the same speed as one without hook points at all.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterable

import torch
from torch import nn
from torch.nn.modules import module as torch_module

from ..names import layer_of

HookFn = Callable[[torch.Tensor, "HookPoint"], "torch.Tensor | None"]


class HookPoint(nn.Module):
    """An identity on a tensor that calls the functions attached to it, in order.

    Functions come from model.hooks(...) (the list fns) or from torch's own register_forward_hook and
    register_forward_pre_hook; either kind may return a replacement. For gradients, attach a function
    that calls tensor.register_hook.
    """

    def __init__(self):
        super().__init__()
        self.name = ""
        self.fns: list[HookFn] = []

    @property
    def layer(self) -> int | None:
        """The block index this hook point lives in, or None outside the blocks."""
        return layer_of(self.name)

    @property
    def active(self) -> bool:
        """Whether any function, ours or torch's, is attached."""
        return bool(self.fns or self._forward_pre_hooks or self._forward_hooks)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # self.active, written out: a property call would double an idle point's cost. An idle point
        # returns x at once; with anything attached it goes through nn.Module.__call__, so torch's
        # forward hooks and pre-hooks fire too.
        if self.fns or self._forward_pre_hooks or self._forward_hooks:
            return super().__call__(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for fn in self.fns:
            out = fn(x, self)
            if out is not None:
                _check_replacement(self.name, x, out)
                x = out
        return x

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


def call_and_check_replaced(point: HookPoint, x: torch.Tensor, read_only: bool = False) -> tuple[torch.Tensor, bool]:
    """point(x), and whether its hooks replaced x: returned another tensor, or edited x in place.

    Attention uses it to know whether the scores or pattern it computed beside the fused kernel are
    still the ones the output was made from. An in-place edit bumps the tensor's version counter;
    tensors made under torch.inference_mode keep none, so those are compared with a copy instead.
    read_only: a replacement is an error (a pattern selection's few heads and rows cannot be used).
    """
    if x.is_inference():
        before = x.clone()
        out = point(x)
        replaced = out is not x or not torch.equal(x, before)
    else:
        version = x._version
        out = point(x)
        replaced = out is not x or x._version != version
    if replaced and read_only:
        raise ValueError(f"a hook on {point.name} replaced its tensor, but with pattern_heads or "
                         "pattern_rows the pattern is read-only (the output comes from the fused kernel); "
                         "hook the full pattern, without a selection, to edit it")
    return out, replaced


def hook_points(model: nn.Module) -> dict[str, HookPoint]:
    """Every hook point of a model by its full name, in forward order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, HookPoint)}


# Where torch keeps the hooks that run around a module's forward (and backward): per module, and for every
# module at once (register_module_forward_hook and its kin). Private names, but the only place they live.
MODULE_HOOK_TABLES = ("_forward_pre_hooks", "_forward_hooks", "_backward_pre_hooks", "_backward_hooks")
GLOBAL_HOOK_TABLES = ("_global_forward_pre_hooks", "_global_forward_hooks", "_global_backward_pre_hooks",
                      "_global_backward_hooks")


def attached_hooks(model: nn.Module) -> list[str]:
    """Every hook that a forward through the model's modules would call, as "where: what"; [] if none.

    Ours (model.hooks(...)), torch's on any submodule (hook points, linears, norms, the model itself) and
    torch's global module hooks. Code that computes the forward without calling the modules (the fast
    decoder) must not run while this is non-empty, or those hooks would silently be skipped.
    """
    found = [f"every module: torch.nn.modules.module.{table}" for table in GLOBAL_HOOK_TABLES
             if getattr(torch_module, table)]
    for name, module in model.named_modules():
        where = name or "the model"
        if isinstance(module, HookPoint) and module.fns:
            found.append(f"{where}: {len(module.fns)} function(s) from model.hooks()")
        found += [f"{where}: {table.strip('_')}" for table in MODULE_HOOK_TABLES if getattr(module, table)]
    return found


@contextmanager
def attached(points: dict[str, HookPoint], pairs: Iterable[tuple[Iterable[str], HookFn]]):
    """Append each fn to the points named beside it for the duration of a with-block, always removing them."""
    added: list[tuple[HookPoint, HookFn]] = []
    try:
        for names, fn in pairs:
            for name in names:
                points[name].fns.append(fn)
                added.append((points[name], fn))
        yield
    finally:
        for point, fn in added:
            point.fns.remove(fn)
