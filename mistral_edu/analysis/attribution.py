"""Direct logit attribution: how much each head and MLP writes straight into one logit.

The residual stream at the end is a sum: embedding + every attention output + every MLP output, and
each attention output is a sum over heads of z_h W_O[:, h]. The logit is W_U[t] . RMSNorm(resid).
RMSNorm divides by the root-mean-square of the whole stream, which is not linear. We freeze that
divisor at its value in this very run, read from norm.hook_scale (as TransformerLens does when it
"folds" the final norm's scale): then the logit is linear in the stream and splits exactly into one term per component, and
the terms add up to the model's own logit. What this measures is the direct path only: a head that
acts by changing what later layers do shows nothing here (use ablation or patching for that).
RMSNorm does not subtract the mean (unlike LayerNorm), so no centring of W_U is involved; the gain
vector of the final norm is multiplied into the unembedding direction.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..hooks import check_index
from .tokens import as_sequence


@dataclass
class LogitAttribution:
    """Terms that add up to logit(target) [- logit(wrong)] at one position.

    heads: (n_layers, n_heads); mlps: (n_layers,); embed: the token embedding's direct term;
    logit: what the model itself computed, for comparison with total().
    """

    heads: torch.Tensor
    mlps: torch.Tensor
    embed: float
    logit: float

    def total(self) -> float:
        """Sum of every term: equals logit up to float rounding."""
        return float(self.heads.sum() + self.mlps.sum()) + self.embed


@torch.no_grad()
def direct_logit_attribution(model, tokens, target: int, wrong: int | None = None,
                             position: int = -1) -> LogitAttribution:
    """Split logit(target) (or logit(target) - logit(wrong)) at position into per-head and per-MLP terms."""
    tokens = as_sequence(model, tokens)
    position = check_index(position, tokens.shape[1], "position", "the sequence")
    for name, token in (("target", target), ("wrong", wrong)):
        if token is not None and not 0 <= token < model.cfg.vocab_size:
            raise ValueError(f"{name} {token} is not a token id (0..{model.cfg.vocab_size - 1})")
    cfg = model.cfg
    logits, cache = model.run_with_cache(
        tokens, names=lambda n: n in ("hook_embed", "norm.hook_scale") or n.endswith(("hook_z", "hook_mlp_out")))
    unembed = model.output.weight.float()                                        # (vocab, dim)
    direction = unembed[target] if wrong is None else unembed[target] - unembed[wrong]  # (dim,)
    frozen_scale = cache["norm.hook_scale"][0, position]                         # (1,): the norm's divisor, frozen
    direction = direction * model.norm.weight.float() / frozen_scale             # (dim,)

    heads = torch.zeros(cfg.n_layers, cfg.n_heads)
    mlps = torch.zeros(cfg.n_layers)
    for layer, block in enumerate(model.layers):
        z = cache["z", layer][0, position].float()                               # (n_heads, head_dim)
        w_o = block.attention.wo.weight.float().view(cfg.dim, cfg.n_heads, cfg.head_dim)  # (dim, n_heads, head_dim)
        per_head = torch.einsum("hd,Dhd->hD", z, w_o)                            # (n_heads, dim)
        heads[layer] = (per_head @ direction).cpu()
        mlps[layer] = float(cache["mlp_out", layer][0, position].float() @ direction)
    embed = float(cache["embed"][0, position].float() @ direction)
    logit = logits[0, position, target] - (0 if wrong is None else logits[0, position, wrong])
    return LogitAttribution(heads, mlps, embed, float(logit))
