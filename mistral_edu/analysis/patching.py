"""Activation patching: which activations carry the difference between a clean and a corrupted prompt.

Run the corrupted prompt, but paste in one activation from the clean run. If the answer flips back
to the clean one, that activation (a layer's residual stream at one position, or one head's output)
carries the information the corruption removed (Meng et al. 2022, "causal tracing"; Wang et al. 2022).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .tokens import as_sequence

_STREAMS = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")


@dataclass
class PatchingResult:
    """Metric of every patched corrupted run, with the two unpatched runs for scale.

    values: (n_layers, seq) for patch_residual, (n_layers, n_heads) for patch_heads.
    """

    values: torch.Tensor
    clean: float
    corrupted: float

    @property
    def normalized(self) -> torch.Tensor:
        """0 where patching did nothing, 1 where it fully restored the clean metric."""
        return (self.values - self.corrupted) / (self.clean - self.corrupted)


def logit_difference(correct: int, wrong: int, position: int = -1) -> Callable[[torch.Tensor], torch.Tensor]:
    """A metric: logit(correct) - logit(wrong) at one position of logits (1, seq, vocab)."""
    def metric(logits: torch.Tensor) -> torch.Tensor:
        return logits[0, position, correct] - logits[0, position, wrong]
    return metric


def _pair(model, clean, corrupted) -> tuple[torch.Tensor, torch.Tensor]:
    clean, corrupted = as_sequence(model, clean), as_sequence(model, corrupted)
    if clean.shape != corrupted.shape:
        raise ValueError(f"clean ({clean.shape[1]} tokens) and corrupted ({corrupted.shape[1]} tokens) must have "
                         "the same length so positions line up; change words that tokenize to as many pieces")
    return clean, corrupted


@torch.no_grad()
def patch_residual(model, clean, corrupted, metric: Callable, stream: str = "resid_pre") -> PatchingResult:
    """Patch one layer's stream at one position from the clean run into the corrupted run, for all of them.

    stream: resid_pre, resid_mid, resid_post, attn_out or mlp_out. Costs n_layers x seq forward passes.
    """
    if stream not in _STREAMS:
        raise ValueError(f"stream must be one of {', '.join(_STREAMS)}, got {stream!r}")
    clean, corrupted = _pair(model, clean, corrupted)
    clean_logits, cache = model.run_with_cache(clean, names=lambda n: n.endswith(f"hook_{stream}"))
    values = torch.zeros(model.cfg.n_layers, clean.shape[1])
    for layer in range(model.cfg.n_layers):
        for position in range(clean.shape[1]):
            def paste(x, hook, position=position):
                x = x.clone()                                                    # (batch, seq, dim)
                x[:, position] = cache[hook.name][:, position]
                return x
            with model.hooks([((stream, layer), paste)]):
                values[layer, position] = float(metric(model(corrupted)))
    return PatchingResult(values, float(metric(clean_logits)), float(metric(model(corrupted))))


@torch.no_grad()
def patch_heads(model, clean, corrupted, metric: Callable) -> PatchingResult:
    """Patch one head's output z (all positions) from the clean run into the corrupted run, for every head."""
    clean, corrupted = _pair(model, clean, corrupted)
    clean_logits, cache = model.run_with_cache(clean, names=lambda n: n.endswith("hook_z"))
    values = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):
            def paste(z, hook, head=head):
                z = z.clone()                                                    # (batch, seq, n_heads, head_dim)
                z[:, :, head] = cache[hook.name][:, :, head]
                return z
            with model.hooks([(("z", layer), paste)]):
                values[layer, head] = float(metric(model(corrupted)))
    return PatchingResult(values, float(metric(clean_logits)), float(metric(model(corrupted))))
