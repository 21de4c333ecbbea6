"""QK and OV circuits of attention heads in factored form, and composition scores between heads.

A head does two separate things (Elhage et al. 2021, "A Mathematical Framework for Transformer
Circuits"): its QK circuit W_Q^T W_K decides where it looks, its OV circuit W_O W_V decides what it
writes there. Both are products of a (dim x head_dim) and a (head_dim x dim) matrix, so they have
rank head_dim at most, and every question about them can be asked of the small factors:

  - OV circuit over token types: W_U W_O W_V W_E would be vocab x vocab (1 billion entries for the
    real model), but it is L @ R with L = W_U W_O (types, head_dim) and R = W_V W_E^T (head_dim,
    types). Its nonzero eigenvalues are those of R @ L (head_dim x head_dim), its diagonal is a row-wise
    dot product, and each column is one (types, head_dim) @ (head_dim,) product.
  - Composition: a later head composes with an earlier one when its W_Q (Q-), W_K (K-) or W_V (V-)
    reads what the earlier head's W_O writes; the score is the Frobenius norm of the product over the
    product of the norms, computed from head_dim x head_dim traces.

Mistral specifics, made explicit rather than hidden:
  - the RMSNorm gains are folded into the weights they feed (a later head reads g * x / rms(x), so
    its W_K becomes W_K diag(g)); the 1 / rms(x) factor depends on the token and is left out;
  - grouped-query attention: query head h reads KV head h // n_rep, so W_K and W_V are shared by the
    n_rep query heads of a group, and so is everything that composes with them through the keys;
  - RoPE rotates q and k by an angle proportional to their distance, so W_Q^T W_K is the QK circuit
    at distance 0; qk_circuit takes a distance to rotate the keys by.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..default import corpus
from ..hooks import check_index
from ..model import apply_rope, rms_scale, rope_rotations
from .next_token import never_trained_types

__all__ = [
    "HeadWeights", "head_weights", "trained_token_ids", "untrained_token_ids", "token_residuals", "ov_circuit", "copying_score",
    "diagonal_ranks",
    "qk_circuit", "composition_score", "composition_scores", "random_composition_baseline",
    "random_composition_scores", "path_ablation_hooks",
]

KINDS = ("q", "k", "v")


@dataclass(frozen=True)
class HeadWeights:
    """One query head's four matrices, in float32, with its RMSNorm gain folded into W_Q, W_K, W_V.

    W_Q, W_K, W_V: (head_dim, dim), what the head reads from the (normalised) residual stream;
    W_O: (dim, head_dim), what it writes back. kv_head is the KV head whose W_K, W_V it shares.
    """

    layer: int
    head: int
    kv_head: int
    W_Q: torch.Tensor
    W_K: torch.Tensor
    W_V: torch.Tensor
    W_O: torch.Tensor


@torch.no_grad()
def head_weights(model, layer: int, head: int) -> HeadWeights:
    """The matrices of query head `head` of `layer`, with the attention norm's gain folded in."""
    cfg = model.cfg
    layer = check_index(layer, cfg.n_layers, "layer")
    head = check_index(head, cfg.n_heads, "head")
    kv_head = head // cfg.n_rep                                   # GQA: the KV head this query head reads
    block = model.layers[layer]
    gain = block.attention_norm.weight.float()                    # (dim,)
    d = cfg.head_dim
    q_rows = slice(head * d, (head + 1) * d)
    kv_rows = slice(kv_head * d, (kv_head + 1) * d)
    attention = block.attention
    return HeadWeights(
        layer=layer, head=head, kv_head=kv_head,
        W_Q=attention.wq.weight[q_rows].float() * gain,            # (head_dim, dim)
        W_K=attention.wk.weight[kv_rows].float() * gain,           # (head_dim, dim)
        W_V=attention.wv.weight[kv_rows].float() * gain,           # (head_dim, dim)
        W_O=attention.wo.weight[:, q_rows].float(),                # (dim, head_dim)
    )


@torch.no_grad()
def trained_token_ids(model) -> torch.Tensor:
    """Ids of the token types the model learned (1-D LongTensor, sorted).

    For the embedded default: the types that occur in its training text (default/train_types.json). Its
    full-softmax loss only ever pushed the others' output rows down, so they carry nothing about their
    token, and circuits over the vocabulary are read on the learned types only. For any other model
    (the real 7B): every type whose output row is its own, not one row shared by many (a fill value).
    """
    checkpoint = getattr(model, "checkpoint", None)
    if checkpoint is not None and checkpoint.is_embedded_default:
        return torch.from_numpy(corpus.train_types())                               # (types,)
    _, inverse, counts = torch.unique(model.output.weight, dim=0, return_inverse=True, return_counts=True)
    return (counts[inverse] == 1).nonzero().flatten().cpu()                        # (types,)


def untrained_token_ids(model) -> torch.Tensor:
    """Ids of the token types the model did not learn (1-D LongTensor, sorted): trained_token_ids' complement.

    On the embedded default, the types absent from its training text: their probability is the part of a
    next-token distribution that is an artefact of a small corpus. On the real 7B, none.
    """
    return never_trained_types(trained_token_ids(model), model.cfg.vocab_size)     # (types,)


@torch.no_grad()
def token_residuals(model, token_ids, layer: int, bos_id: int = 1) -> torch.Tensor:
    """(types, dim): the residual stream entering `layer` at token t of the two-token text [BOS, t].

    What a later head reads about a token is not its raw embedding W_E[t] once MLPs have added to it
    (attention-only models can use W_E, as Elhage et al. do; this model has an MLP in every block), so
    circuits over token types take these vectors: each token alone, as the model has made it by then.
    """
    layer = check_index(layer, model.cfg.n_layers, "layer")
    ids = torch.as_tensor(token_ids, dtype=torch.long, device=model.device)
    texts = torch.stack([torch.full_like(ids, bos_id), ids], dim=1)                # (types, 2)
    name = f"layers.{layer}.hook_resid_pre"
    _, cache = model.run_with_cache(texts, names=[name])
    return cache[name][:, 1].float()                                                # (types, dim)


@torch.no_grad()
def ov_circuit(model, layer: int, head: int, token_ids, sources: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The OV circuit over token types as two factors (L, R), with L @ R = W_U W_O W_V X^T.

    X = sources (types, dim), the residual vectors of the token types token_ids (token_residuals).
    Entry [i, j] of L @ R is how much attending to a token of type token_ids[j] raises the logit of
    type token_ids[i] through this head's direct path. L: (types, head_dim), R: (head_dim, types).
    Sources enter at unit RMS (the attention norm's scaling) and the final norm's gain is folded into
    W_U. Never multiply L @ R for the whole vocabulary: use copying_score and diagonal_ranks.
    """
    w = head_weights(model, layer, head)
    ids = torch.as_tensor(token_ids, dtype=torch.long, device=model.device)
    x = sources.float().to(model.device)                                            # (types, dim)
    x = x / rms_scale(x, model.cfg.norm_eps)                                        # (types, dim), unit RMS
    unembed = model.output.weight[ids].float() * model.norm.weight.float()          # (types, dim)
    return (unembed @ w.W_O).cpu(), (w.W_V @ x.T).cpu()                             # (types, head_dim), (head_dim, types)


def copying_score(left: torch.Tensor, right: torch.Tensor) -> float:
    """sum(eigenvalues) / sum(|eigenvalues|) of left @ right, from the small right @ left.

    +1 when every direction the circuit maps back onto itself is amplified (it copies), -1 when every
    one is suppressed, near 0 for an unrelated map. left @ right (n x n) and right @ left (r x r)
    share their nonzero eigenvalues, so an (r x r) eigen-decomposition suffices.
    """
    eigenvalues = torch.linalg.eigvals(right.double() @ left.double())              # (r,) complex
    return float(eigenvalues.real.sum() / eigenvalues.abs().sum())


def diagonal_ranks(left: torch.Tensor, right: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """(n,): for each column j of left @ right, how many rows beat row j (0: the diagonal is the top).

    For an OV circuit: for each token type attended to, how many other types' logits it raises more
    than its own (chance: about n / 2). Columns are built `chunk` at a time: (n, chunk) numbers,
    never (n, n).
    """
    n = right.shape[1]
    ranks = torch.empty(n, dtype=torch.long)
    for start in range(0, n, chunk):
        columns = left @ right[:, start:start + chunk]                              # (n, chunk)
        own = columns[torch.arange(start, start + columns.shape[1]), torch.arange(columns.shape[1])]  # (chunk,)
        ranks[start:start + columns.shape[1]] = (columns > own).sum(dim=0)
    return ranks


@torch.no_grad()
def qk_circuit(model, layer: int, head: int, queries: torch.Tensor, keys: torch.Tensor,
               distance: int = 0) -> torch.Tensor:
    """Attention scores (q, k) of one head between residual vectors, with keys `distance` positions back.

    queries (q, dim) and keys (k, dim) are residual-stream vectors (e.g. token embeddings, or what an
    earlier head writes); they are RMS-normalised here as the attention norm would. The score is
    (R_m W_Q x_q) . (R_{m-distance} W_K x_k) / sqrt(head_dim): RoPE makes it depend on the distance only.
    """
    w = head_weights(model, layer, head)
    eps = model.cfg.norm_eps

    def normalise(x):
        x = x.float().to(w.W_Q.device)                                              # (n, dim)
        return x / rms_scale(x, eps)                                                # (n, dim), unit RMS

    q = (normalise(queries) @ w.W_Q.T)[None, :, None]                               # (1, q, 1, head_dim)
    k = (normalise(keys) @ w.W_K.T)[None, :, None]                                  # (1, k, 1, head_dim)
    cfg = model.cfg
    if not isinstance(distance, int) or distance < 0:
        raise ValueError(f"distance must be an int >= 0 (how many positions the key sits before the query), got {distance!r}")
    at = lambda position, n: torch.full((n,), position, device=q.device)         # (n,) one position for every row
    q = apply_rope(q, rope_rotations(at(distance, q.shape[1]), cfg.head_dim, cfg.rope_theta))  # (1, q, 1, head_dim)
    k = apply_rope(k, rope_rotations(at(0, k.shape[1]), cfg.head_dim, cfg.rope_theta))         # (1, k, 1, head_dim)
    return (q[0, :, 0] @ k[0, :, 0].T / cfg.head_dim ** 0.5).cpu()                 # (q, k)


def _gram(a: torch.Tensor) -> torch.Tensor:
    """a @ a.T in double: for a (r, dim) factor, the (r, r) matrix that carries its Frobenius norms."""
    a = a.double()
    return a @ a.T                                                                  # (r, r)


def composition_score(reader_left: torch.Tensor, reader_right: torch.Tensor,
                      writer_left: torch.Tensor, writer_right: torch.Tensor) -> float:
    """||A B||_F / (||A||_F ||B||_F) for A = reader_left.T @ reader_right, B = writer_left @ writer_right.

    A is the later head's bilinear form read from the residual (e.g. W_Q^T W_K, both (r, dim)), B the
    earlier head's (dim, dim) map W_O W_V (W_O (dim, r), W_V (r, dim)). Every norm is a trace of
    (r x r) products: ||X^T M Y||_F^2 = trace(X X^T M Y Y^T M^T), with M = reader_right @ writer_left.
    """
    middle = reader_right.double() @ writer_left.double()                           # (r, r)
    xx, yy = _gram(reader_left), _gram(writer_right)                                # (r, r), (r, r)
    product = torch.trace(xx @ middle @ yy @ middle.T)
    reader = torch.trace(xx @ _gram(reader_right))
    writer = torch.trace(_gram(writer_left.T) @ yy)
    return float((product / (reader * writer)).sqrt())


def _reader_factors(w: HeadWeights, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(X, Y) with X.T @ Y the later head's form whose `kind` side reads the earlier head's output."""
    if kind == "q":
        return w.W_K, w.W_Q            # (W_Q^T W_K)^T: the query side reads the residual
    if kind == "k":
        return w.W_Q, w.W_K            # W_Q^T W_K: the key side reads the residual
    return w.W_O.T, w.W_V              # W_O W_V: the value side reads the residual


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} (query-, key- or value-composition), got {kind!r}")


def composition_scores(model, layer: int, head: int, kind: str = "k") -> torch.Tensor:
    """(layer, n_heads): how strongly head `head` of `layer` composes with every head of each earlier layer.

    kind 'k': its keys read the earlier head's output (what induction heads do with previous-token
    heads); 'q': its queries do; 'v': its values do. Compare with random_composition_baseline.
    """
    _check_kind(kind)
    reader = head_weights(model, layer, head)
    left, right = _reader_factors(reader, kind)
    scores = torch.zeros(reader.layer, model.cfg.n_heads)
    for earlier in range(reader.layer):
        for source in range(model.cfg.n_heads):
            writer = head_weights(model, earlier, source)
            scores[earlier, source] = composition_score(left, right, writer.W_O, writer.W_V)
    return scores


def random_composition_scores(model, draws: int = 200, seed: int = 0) -> torch.Tensor:
    """Composition scores of random Gaussian matrices with a head's shapes, one per draw, (draws,).

    The weights of a trained model are fixed, so the unit that varies in a composition claim is the
    random baseline: a score means something only above the spread of these draws, not just their mean.
    """
    cfg = model.cfg
    generator = torch.Generator().manual_seed(seed)

    def factor(*shape):
        return torch.randn(*shape, generator=generator)

    return torch.tensor([composition_score(factor(cfg.head_dim, cfg.dim), factor(cfg.head_dim, cfg.dim),
                                           factor(cfg.dim, cfg.head_dim), factor(cfg.head_dim, cfg.dim))
                         for _ in range(draws)], dtype=torch.float64)              # (draws,)


def random_composition_baseline(model, samples: int = 200, seed: int = 0) -> float:
    """The mean composition score of random Gaussian matrices with a head's shapes (what chance gives)."""
    return float(random_composition_scores(model, samples, seed).mean())


def path_ablation_hooks(model, sources, layer: int, kind: str = "k") -> list[tuple[str, Callable]]:
    """Hooks that remove the output of heads `sources` [(layer, head), ...] from one input of `layer`.

    Only the `kind` ('q', 'k' or 'v') projection of `layer` sees the residual stream without them;
    everything else (the other two projections, the MLPs, the logits' direct path) sees the full one.
    This tests a composition claim directly: if an induction head needs a previous-token head through
    its keys, removing that head from the keys alone should remove the induction pattern.
    """
    _check_kind(kind)
    cfg = model.cfg
    layer = check_index(layer, cfg.n_layers, "layer")
    sources = [sources] if isinstance(sources, tuple) else list(sources)
    by_layer: dict[int, list[int]] = {}
    for source_layer, source_head in sources:
        if not 0 <= source_layer < layer:
            raise ValueError(f"source layer {source_layer} must come before layer {layer}: a head only reads earlier layers")
        by_layer.setdefault(source_layer, []).append(check_index(source_head, cfg.n_heads, "head"))
    removed: dict[str, torch.Tensor] = {}
    block = model.layers[layer]

    def record(z, hook):
        heads = by_layer[hook.layer]
        d = cfg.head_dim
        wo = model.layers[hook.layer].attention.wo.weight.view(cfg.dim, cfg.n_heads, d)[:, heads]   # (dim, n_src, head_dim)
        out = torch.einsum("bshd,ehd->bse", z[:, :, heads], wo)                                 # (batch, seq, dim)
        removed["sum"] = removed.get("sum", 0) + out

    def keep_residual(x, hook):
        removed["resid"] = x - removed.pop("sum")                                               # (batch, seq, dim)

    def replace(projected, hook):
        x = block.attention_norm(removed.pop("resid"))                                          # (batch, seq, dim)
        weight = getattr(block.attention, f"w{kind}")
        return weight(x).view_as(projected)                                                      # (batch, seq, heads, head_dim)

    return ([(f"layers.{source_layer}.attention.hook_z", record) for source_layer in by_layer]
            + [(f"layers.{layer}.hook_resid_pre", keep_residual), (f"layers.{layer}.attention.hook_{kind}", replace)])
