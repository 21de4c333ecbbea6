"""Linear probes on the residual stream: labelled windows, the activations, the probe, its controls.

A probe is a logistic regression trained to read a label from one layer's residual vectors. Its
held-out accuracy says the label is linearly decodable there, not that the model uses it (Belinkov
2022), so it is always read against a baseline that sees only the token and a control task whose
labels carry no information about the text (Hewitt & Liang 2019).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["LinearProbe", "PassageWindows", "balanced_accuracy", "passage_split", "passage_windows",
           "probe_accuracy", "random_token_labels", "residual_stack", "shared_token_mask", "token_identity_accuracy",
           "train_probe"]


@dataclass
class PassageWindows:
    """Fixed-length token windows cut from labelled passages, each starting with BOS.

    Every window has the same length, so both classes see the same positions and position cannot
    stand in for the label.
    """

    tokens: torch.Tensor    # (windows, 1 + length) token ids
    passage: torch.Tensor   # (windows,) index of the passage each window came from
    label: torch.Tensor     # (windows,) 1 for the positive source, 0 for the other
    quoted: torch.Tensor    # (windows, 1 + length) True where the token starts inside a quotation

    def __len__(self) -> int:
        return len(self.tokens)


def _token_starts(tok, ids: list[int]) -> list[int]:
    """UTF-8 byte offset in the text where each token's first visible character starts."""
    starts, offset = [], -1                  # encode() prepends a space the text does not have
    for i in ids:
        piece = tok.id_to_piece(i)
        if piece.startswith("<0x") and piece.endswith(">"):
            starts.append(offset)
            offset += 1
            continue
        raw = piece.replace("\u2581", " ").encode("utf-8")
        starts.append(offset + len(raw) - len(raw.lstrip(b" ")))
        offset += len(raw)
    return starts


def passage_windows(tok, records: list[dict], length: int, positive: str = "jargon") -> PassageWindows:
    """Cut each record's text ({"text", "source", "quoted"}) into windows of `length` tokens after BOS.

    A passage's remainder shorter than `length` is dropped; a window never spans two passages.
    """
    tokens, passage, label, quoted = [], [], [], []
    for index, record in enumerate(records):
        text = record["text"]
        ids = tok.encode(text, bos=False)
        spans = [(len(text[:a].encode("utf-8")), len(text[:b].encode("utf-8"))) for a, b in record["quoted"]]
        inside = [any(a <= s < b for a, b in spans) for s in _token_starts(tok, ids)]
        for start in range(0, len(ids) - length + 1, length):
            tokens.append([tok.bos_id] + ids[start:start + length])
            quoted.append([False] + inside[start:start + length])
            passage.append(index)
            label.append(int(record["source"] == positive))
    if not tokens:
        raise ValueError(f"no passage has {length} tokens: pass a shorter length")
    return PassageWindows(torch.tensor(tokens), torch.tensor(passage), torch.tensor(label), torch.tensor(quoted))


def passage_split(windows: PassageWindows, seed: int, test_share: float = 0.25) -> torch.Tensor:
    """(windows,) True for training windows: a random test_share of each label's passages is held out.

    One fixed split is one draw: a probe's accuracy moves by points from one split to the next, so a
    claim is read over many seeds. Drawn per label, so both classes are in every test set.
    """
    generator = torch.Generator().manual_seed(seed)
    test = torch.zeros(int(windows.passage.max()) + 1, dtype=torch.bool)          # (passages,)
    for c in (0, 1):
        mine = windows.passage[windows.label == c].unique()                          # (passages of label c,)
        count = max(1, round(test_share * len(mine)))
        if count >= len(mine):
            raise ValueError(f"label {c} has {len(mine)} passage(s): too few to hold {test_share:.0%} out and "
                             "train on the rest")
        test[mine[torch.randperm(len(mine), generator=generator)[:count]]] = True
    return ~test[windows.passage]                                                    # (windows,)


@torch.no_grad()
def residual_stack(model, tokens: torch.Tensor, names: list[str], batch: int = 64) -> torch.Tensor:
    """The residual stream at each named hook point, (points, windows, seq, dim), float32 on the CPU.

    return_hidden stops before the output projection: for a small model the vocab-wide logits would
    cost more than all its blocks together, and a probe never reads them.
    """
    parts = []
    for rows in tokens.split(batch):
        _, cache = model.run_with_cache(rows.to(model.device), names=names, return_hidden=True)
        parts.append(torch.stack([cache[name].float().cpu() for name in names]))  # (points, rows, seq, dim)
    return torch.cat(parts, dim=1)                                                 # (points, windows, seq, dim)


def shared_token_mask(tokens: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """(windows, seq) True at tokens whose id occurs in windows of both labels (BOS never counts)."""
    per_token = label[:, None].expand_as(tokens)                                   # (windows, seq)
    in_both = set(tokens[per_token == 1].tolist()) & set(tokens[per_token == 0].tolist())
    mask = torch.isin(tokens, torch.tensor(sorted(in_both), dtype=tokens.dtype))   # (windows, seq)
    mask[:, 0] = False
    return mask


def random_token_labels(ids: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Hewitt & Liang's control task: one random 0/1 label per token id, about half of each, (n,) like ids.

    The label belongs to the id, so the same id carries the same label in training and in test: a
    probe scores well on it only by memorising which token it sees. Task accuracy minus control
    accuracy (selectivity) is the part of the task accuracy that memorising token ids cannot explain.
    """
    distinct = ids.unique()                                                        # (types,)
    generator = torch.Generator().manual_seed(seed)
    per_type = (torch.randperm(len(distinct), generator=generator) < len(distinct) // 2).long()  # (types,)
    return per_type[torch.searchsorted(distinct, ids)]                             # (n,)


def balanced_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over the two classes of the share predicted right (logit > 0 means 1): chance is 0.5."""
    predicted = (logits > 0).long()
    return sum(float((predicted[labels == c] == c).float().mean()) for c in (0, 1)) / 2


@dataclass
class LinearProbe:
    """A logistic regression on standardised features: logit = ((x - mean) / std) @ weight + bias."""

    mean: torch.Tensor     # (dim,)
    std: torch.Tensor      # (dim,)
    weight: torch.Tensor   # (dim,)
    bias: torch.Tensor     # ()

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std) @ self.weight + self.bias            # (n,)

    def direction(self) -> torch.Tensor:
        """The probe's direction in the residual stream's own coordinates, (dim,)."""
        return self.weight / self.std


def train_probe(x: torch.Tensor, labels: torch.Tensor, weight_decay: float = 1e-3, steps: int = 100) -> LinearProbe:
    """Fit a logistic-regression probe to x (n, dim) and 0/1 labels (n,), each class weighted equally.

    L-BFGS on the full batch: a convex problem with a few thousand points converges in well under a
    second. The L2 penalty keeps the weights finite when the classes are separable.
    """
    if set(labels.unique().tolist()) != {0, 1}:
        raise ValueError("train_probe needs examples of both labels, 0 and 1")
    x = x.float()
    mean, std = x.mean(0), x.std(0) + 1e-6                                         # (dim,) each
    z = (x - mean) / std                                                           # (n, dim)
    y = labels.float()
    sample_weight = torch.where(labels == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))  # (n,): balanced classes
    weight = torch.zeros(x.shape[1], requires_grad=True)
    bias = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=steps, line_search_fn="strong_wolfe")

    def loss():
        optimizer.zero_grad()
        value = (torch.nn.functional.binary_cross_entropy_with_logits(z @ weight + bias, y, weight=sample_weight)
                 + weight_decay * weight.pow(2).sum())
        value.backward()
        return value

    with torch.enable_grad():
        optimizer.step(loss)
    return LinearProbe(mean, std, weight.detach(), bias.detach())


def probe_accuracy(x: torch.Tensor, labels: torch.Tensor, train: torch.Tensor) -> float:
    """Train a probe on the rows where train is True, return its balanced accuracy on the others."""
    probe = train_probe(x[train], labels[train])
    return balanced_accuracy(probe.logits(x[~train]), labels[~train])


def token_identity_accuracy(ids: torch.Tensor, labels: torch.Tensor, train: torch.Tensor) -> float:
    """A per-token lookup table from the training counts, scored on the held-out rows.

    For each token id, predict the label that was more frequent for it in training, each class's
    counts divided by its size (so both classes weigh the same); ids unseen in training get label 0.
    It knows which token is there and nothing about its context. It is not the best a classifier of
    the current token can do: one that generalises across similar ids (a probe on the embedding) can
    beat it on ids that were rare or unseen in training.
    """
    size = int(ids.max()) + 1
    counts = torch.zeros(2, size)
    for c in (0, 1):
        rows = train & (labels == c)
        counts[c] = torch.bincount(ids[rows], minlength=size).float() / max(int(rows.sum()), 1)
    scores = counts[1] - counts[0]                                                 # (ids,) > 0 favours label 1
    test = ~train
    return balanced_accuracy(scores[ids[test]], labels[test])
