"""Find the first place where the residual stream stops being finite: an fp16 overflow, named by its layer.

float16 has three more mantissa bits than bfloat16 but its largest finite value is 65,504 (bf16's is
3.4e38). Large models grow a few outlier features, hidden dimensions whose values are far larger than
the rest (Dettmers et al. 2022, "LLM.int8()", arXiv:2208.07339), so a model that is finite in bf16 can
overflow to inf in fp16, and an inf becomes NaN at the next subtraction or normalisation. By the
logits every position is NaN and nothing says where it began. This watch records, at every residual
stream hook point, whether the stream is still finite, and names the first one that is not: the
embedding, or layer i's attention (resid_mid) or feed-forward (resid_post).

Off, it costs nothing (the hook points stay idle). On, each point adds one isfinite reduction and
one max, kept on the device: nothing waits for the GPU until the report is read.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from ..names import layer_of

# The residual stream as the forward pass writes it: after the embedding, after each layer's
# attention (resid_mid) and after its feed-forward (resid_post).
WRITERS = {"hook_embed": "the embedding", "hook_resid_mid": "attention", "hook_resid_post": "feed-forward"}


def residual_points(model) -> list[str]:
    """The residual stream's hook points in forward order: hook_embed, then resid_mid, resid_post per layer."""
    return [name for name in model.hook_names() if name.rpartition(".")[2] in WRITERS]


def readable(limit: float) -> str:
    """A dtype's largest finite value as people write it: 65,504 for fp16, 3.4e+38 for bf16 and fp32."""
    return f"{limit:,.0f}" if limit < 1e6 else f"{limit:.2g}"


@dataclass
class NonFiniteWatch:
    """What a watched forward pass saw: per residual point, whether it was finite and its largest |value|."""

    dtype: torch.dtype | None = None
    finite: dict[str, torch.Tensor] = field(default_factory=dict)    # name -> () bool, on the device
    abs_max: dict[str, torch.Tensor] = field(default_factory=dict)   # name -> () float32, on the device

    def record(self, x: torch.Tensor, hook) -> None:
        """A hook function: keep x's finiteness and largest finite magnitude, without a device sync."""
        self.dtype = x.dtype
        finite = torch.isfinite(x)                                            # (batch, seq, dim) bool
        self.finite[hook.name] = finite.all()                                 # () bool
        self.abs_max[hook.name] = torch.where(finite, x, 0).abs().amax().float()  # () largest finite |x|

    @property
    def first(self) -> str | None:
        """The first residual hook point (in forward order) that held an inf or a NaN, or None."""
        return next((name for name, ok in self.finite.items() if not bool(ok)), None)

    @property
    def layer(self) -> int | None:
        """The layer of the first non-finite point (None when all is finite, or when it is the embedding)."""
        return layer_of(self.first) if self.first else None

    def largest(self, names: list[str]) -> tuple[str, float]:
        """(hook point, value) of the largest finite magnitude among the named points."""
        name = max(names, key=lambda n: float(self.abs_max[n]))
        return name, float(self.abs_max[name])

    def report(self) -> str:
        """One sentence: all finite with the headroom left in the dtype, or where the overflow began."""
        if not self.finite:
            raise RuntimeError("nothing was recorded: run a forward pass inside watch_nonfinite(model)")
        limit = torch.finfo(self.dtype).max
        names = list(self.finite)
        if self.first is None:
            name, value = self.largest(names)
            return (f"the residual stream stayed finite in {self.dtype}: largest |value| {value:,.1f} at {name}, "
                    f"{limit / max(value, 1e-30):.3g}x below the dtype's largest finite value {readable(limit)}")
        where = WRITERS[self.first.rpartition(".")[2]]
        block = f"layer {self.layer}'s {where}" if self.layer is not None else where
        before = names[:names.index(self.first)]
        history = ("; before it the largest |value| was {1:,.1f} at {0}".format(*self.largest(before))
                   if before else "")
        return (f"the residual stream first held inf or NaN at {self.first} (written by {block}) in {self.dtype}, "
                f"whose largest finite value is {readable(limit)}{history}. Load the model in bfloat16 or float32 "
                "(load_model(dtype=...)) to keep the range.")


@contextmanager
def watch_nonfinite(model):
    """Context manager: every forward pass inside records the residual stream's finiteness (the last pass wins).

        with watch_nonfinite(model) as watch:
            model(tokens)
        watch.first, watch.layer, watch.report()
    """
    watch = NonFiniteWatch()
    with model.hooks([(name, watch.record) for name in residual_points(model)]):
        yield watch


def check_finite(model, tokens: torch.Tensor) -> NonFiniteWatch:
    """Run tokens (batch, seq) through model; raise FloatingPointError naming the first non-finite layer."""
    with torch.no_grad(), watch_nonfinite(model) as watch:
        model(tokens)
    if watch.first is not None:
        raise FloatingPointError(watch.report())
    return watch
