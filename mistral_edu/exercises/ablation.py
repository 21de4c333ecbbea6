"""Ablation and head-patching exercises (notebook 09): a hook that removes one head (zero and mean), and a
head x position patching sweep.

The checkers run on the patching exercise's small model, so they cost the same on the embedded default
and on the real weights. Their token batches have two rows, so that an answer which treats the batch as one
sequence (a mean per sequence, a patch of row 0) fails; the references use the hooks API directly, because
analysis.ablate_heads takes one sequence.
"""
from __future__ import annotations

from typing import Callable

import torch

from .catalogue import Exercise, register
from .patching import _checker_model
from .verdict import Case, Verdict, check, judge_tensors

__all__ = ["check_ablate_head", "check_head_position_patching", "head_position_patching"]

ABLATE_HEAD = register(Exercise(
    name="ablate_head", notebook="09", difficulty=2, minutes=15,
    task="write ablate_head(model, tokens, layer, head, how): the logits of `tokens` with one head's output "
         "(layers.{layer}.attention.hook_z, (batch, seq, n_heads, head_dim)) replaced at every position by zeros "
         "(how='zero') or by its own mean over the batch and positions of these tokens (how='mean')",
    hints=("ablation asks what a head contributes by taking its output away; zero is the bluntest replacement, the "
           "mean keeps the head saying 'something typical' so the rest of the model stays on familiar inputs",
           "for the mean, first record the head's output on the same tokens and average it over batch and "
           "positions, keeping head_dim; then run the tokens with a hook on hook_z that returns a copy in which only "
           "that head's slice is replaced"),
    solution='''def ablate_head(model, tokens, layer, head, how):
    name = f"layers.{layer}.attention.hook_z"
    if how == "mean":
        _, cache = model.run_with_cache(tokens, names=[name])
        replacement = cache[name][:, :, head].mean(dim=(0, 1))     # (head_dim,)
    else:
        replacement = 0.0

    def remove(z, hook):
        z = z.clone()                                               # (batch, seq, n_heads, head_dim)
        z[:, :, head] = replacement
        return z

    with model.hooks([(name, remove)]):
        return model(tokens)''',
))

HEAD_POSITION_PATCHING = register(Exercise(
    name="head_position_patching", notebook="09", difficulty=3, minutes=25,
    task="write head_position_patching(model, clean_tokens, corrupted_tokens, layer, metric): an (n_heads, seq) "
         "tensor whose [head, position] entry is metric(logits) of the corrupted run with that one head's output "
         "(hook_z) at that one position taken from the clean run",
    hints=("a sweep repeats one small patch over a grid: each cell asks whether this head, at this position, carries "
           "the difference between the two prompts",
           "record the clean run's hook_z once; then, for every head and every position, run the corrupted tokens "
           "with a hook that returns a copy whose single [position, head] slice is the clean one, and store the "
           "metric of the logits in that cell"),
    solution='''def head_position_patching(model, clean_tokens, corrupted_tokens, layer, metric):
    name = f"layers.{layer}.attention.hook_z"
    _, clean = model.run_with_cache(clean_tokens, names=[name])
    seq = corrupted_tokens.shape[1]
    values = torch.zeros(model.cfg.n_heads, seq)
    for head in range(model.cfg.n_heads):
        for position in range(seq):
            def paste(z, hook):
                z = z.clone()                                       # (batch, seq, n_heads, head_dim)
                z[:, position, head] = clean[name][:, position, head]
                return z
            with model.hooks([(name, paste)]):
                values[head, position] = float(metric(model(corrupted_tokens)))
    return values''',
))


def _ablated(model, tokens: torch.Tensor, layer: int, replace: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Logits with layer `layer`'s z (batch, seq, n_heads, head_dim) edited by replace(z)."""
    with model.hooks([(f"layers.{layer}.attention.hook_z", lambda z, hook: replace(z.clone()))]):
        return model(tokens)


def _set(z: torch.Tensor, index: tuple, value) -> torch.Tensor:
    z[index] = value
    return z


def _ablate_head(model, tokens: torch.Tensor, layer: int, head: int, how: str) -> torch.Tensor:
    """The reference: the head's z (batch, seq, n_heads, head_dim) set to 0 or to its mean over batch and positions.

    The hook sees this run's own z, which the ablation at the same layer cannot have changed, so its mean is the
    mean of a separate clean run on these tokens.
    """
    return _ablated(model, tokens, layer, lambda z: _set(z, (slice(None), slice(None), head),
                                                          0.0 if how == "zero" else z[:, :, head].mean(dim=(0, 1))))


ABLATE_SLIPS = {
    "these are the unablated logits: the hook's edit never reached the model (return the edited tensor)":
        lambda c: c.args[0](c.args[1]),
    "you replaced position `head` of the sequence (z[:, head]); the heads are dim 2 of (batch, seq, n_heads, head_dim)":
        lambda c: _ablated(*c.args[:3], lambda z: _set(z, (slice(None), c.args[3]), 0.0 if c.args[4] == "zero"
                                                       else z[:, c.args[3]].mean(dim=(0, 1)))),
    "you ablated every head of the layer: replace only the one head's slice":
        lambda c: _ablated(*c.args[:3], lambda z: _set(z, (Ellipsis,), 0.0 if c.args[4] == "zero"
                                                       else z.mean(dim=(0, 1), keepdim=True).expand_as(z).clone())),
    "mean ablation used zeros: with how='mean' the head's output becomes its mean over batch and positions":
        lambda c: _ablate_head(*c.args[:4], "zero"),
    "your mean also averaged over the heads: average only that head's output, over batch and positions":
        lambda c: _ablated(*c.args[:3], lambda z: _set(z, (slice(None), slice(None), c.args[3]),
                                                        0.0 if c.args[4] == "zero" else z.mean(dim=(0, 1, 2)))),
    "your mean kept the positions (an average over the batch only): average over batch AND positions":
        lambda c: _ablated(*c.args[:3], lambda z: _set(z, (slice(None), slice(None), c.args[3]),
                                                        0.0 if c.args[4] == "zero" else z[:, :, c.args[3]].mean(0))),
    "your mean is one per sequence (over positions only): average over the batch AND positions, one mean for all rows":
        lambda c: _ablated(*c.args[:3], lambda z: _set(z, (slice(None), slice(None), c.args[3]),
                                                        0.0 if c.args[4] == "zero"
                                                        else z[:, :, c.args[3]].mean(dim=1, keepdim=True))),
}


def check_ablate_head(fn: Callable[..., torch.Tensor] | None) -> Verdict:
    """fn(model, tokens, layer, head, how) -> logits with one head zero- or mean-ablated, on three cases."""
    model = _checker_model()
    # two rows: with one, a mean per sequence equals the mean over the batch, and the wrong answer would pass
    tokens = torch.tensor([[1, 7, 12, 30, 4, 9, 22, 3, 44, 5], [1, 18, 40, 2, 33, 9, 16, 27, 8, 11]])   # (2, 10)
    cases = [Case(f"layer {layer}, head {head}, how={how!r}", (model, tokens, layer, head, how),
                  _ablate_head(model, tokens, layer, head, how))
             for layer, head, how in [(1, 2, "zero"), (0, 1, "mean"), (1, 3, "mean")]]

    def verify(fn) -> str | None:
        return judge_tensors(fn, cases, ABLATE_SLIPS, atol=1e-4)

    return check(ABLATE_HEAD, fn, verify, "equal to analysis.ablate_heads, zero and mean")


def head_position_patching(model, clean: torch.Tensor, corrupted: torch.Tensor, layer: int, metric: Callable,
                           heads: Callable[[int], list[int]] | None = None, positions: Callable[[int], list[int]] | None = None
                           ) -> torch.Tensor:
    """(n_heads, seq) metric values: cell [h, p] patches the clean z of heads(h) at positions(p) into the corrupted run.

    heads and positions default to the one cell itself; the slips widen them (a whole head, a whole position).
    """
    name = f"layers.{layer}.attention.hook_z"
    _, cache = model.run_with_cache(clean, names=[name])
    n_heads, seq = model.cfg.n_heads, corrupted.shape[1]
    values = torch.zeros(n_heads, seq)
    for h in range(n_heads):
        for p in range(seq):
            hs, ps = (heads or (lambda h: [h]))(h), (positions or (lambda p: [p]))(p)

            def paste(z, hook):
                z = z.clone()                                               # (batch, seq, n_heads, head_dim)
                for pos in ps:
                    z[:, pos, hs] = cache[name][:, pos, hs]
                return z

            with model.hooks([(name, paste)]):
                values[h, p] = float(metric(model(corrupted)))
    return values


SWEEP_SLIPS = {
    "rows are positions and columns heads: return (n_heads, seq), one row per head":
        lambda c: head_position_patching(*c.args).T,
    "each row is constant: you patched the head at every position at once, not one position per cell":
        lambda c: head_position_patching(*c.args, positions=lambda p: list(range(c.args[2].shape[1]))),
    "each column is constant: you patched every head at that position, not one head per cell":
        lambda c: head_position_patching(*c.args, heads=lambda h: list(range(c.args[0].cfg.n_heads))),
    "the direction is reversed: you ran the clean tokens with the corrupted run's head output; run the CORRUPTED "
    "tokens and paste in the clean one": lambda c: head_position_patching(c.args[0], c.args[2], c.args[1], *c.args[3:]),
    "every cell is the corrupted run's metric: the hook's edit never reached the model (return the patched tensor)":
        lambda c: torch.full_like(c.expected, float(c.args[4](c.args[0](c.args[2])))),
}


def check_head_position_patching(fn: Callable[..., torch.Tensor] | None) -> Verdict:
    """fn(model, clean, corrupted, layer, metric) -> (n_heads, seq) patched metrics, on two layers."""
    model = _checker_model()
    # two rows, so that a patch of row 0 only (z[0, position, head]) fails; the metric reads both
    clean = torch.tensor([[1, 7, 12, 30, 4, 9], [1, 20, 3, 14, 33, 9]])                   # (2, 6)
    corrupted = torch.tensor([[1, 8, 25, 31, 4, 9], [1, 21, 5, 15, 33, 9]])               # (2, 6)
    metric = lambda logits: (logits[:, -1, 5] - logits[:, -1, 6]).mean()                  # a logit difference, both rows
    cases = [Case(f"layer {layer}", (model, clean, corrupted, layer, metric),
                  head_position_patching(model, clean, corrupted, layer, metric)) for layer in (1, 0)]

    def verify(fn) -> str | None:
        return judge_tensors(fn, cases, SWEEP_SLIPS, atol=1e-4)

    return check(HEAD_POSITION_PATCHING, fn, verify, "your sweep matches, cell by cell")
