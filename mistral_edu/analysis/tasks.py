"""A clean/corrupted prompt pair for patching and attribution, built on a behaviour small models learn first: copying.

A random sequence A seen once, then repeated up to A[j - 1]: the next token is A[j], and only a model
that looks back at the first copy can know it (an induction head does exactly this). The corrupted
prompt changes the one token A[j] of the first copy into X, so copying now predicts X. The metric,
logit(A[j]) - logit(X) at the last position, is large and positive on the clean prompt, large and
negative on the corrupted one, and everything between is the share of the copy that was restored.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .patching import logit_difference


@dataclass(frozen=True)
class CopyTask:
    """clean, corrupted: (1, seq) token ids that differ at `changed` only; correct = A[j], wrong = X."""

    clean: torch.Tensor
    corrupted: torch.Tensor
    changed: int
    correct: int
    wrong: int

    def metric(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """logit(correct) - logit(wrong) at the last position of logits (1, seq, vocab)."""
        return logit_difference(self.correct, self.wrong)


def corrupted_copy_task(vocab, span: int = 12, j: int = 6, seed: int = 0, bos_id: int = 1) -> CopyTask:
    """BOS, span distinct tokens A from vocab, then A[:j] again; corrupted: the first copy's A[j] becomes X.

    The tokens are distinct (and X is none of them) so that A[j - 1] occurs once in the first copy and
    copying has exactly one answer.
    """
    vocab = torch.as_tensor(vocab, dtype=torch.long)
    if vocab.dim() != 1 or len(vocab) < span + 1:
        raise ValueError(f"vocab must be a 1-D list of at least span + 1 = {span + 1} distinct token ids, "
                         f"got shape {tuple(vocab.shape)}")
    if not 1 <= j < span:
        raise ValueError(f"j = {j} must be in 1..{span - 1}: the repeat ends with A[j - 1] and predicts A[j]")
    order = torch.randperm(len(vocab), generator=torch.Generator().manual_seed(seed))
    a, x = vocab[order[:span]], int(vocab[order[span]])                       # (span,), one more token
    bos = torch.tensor([bos_id])
    clean = torch.cat([bos, a, a[:j]])[None]                                  # (1, 1 + span + j)
    corrupted = clean.clone()
    corrupted[0, 1 + j] = x
    return CopyTask(clean, corrupted, changed=1 + j, correct=int(a[j]), wrong=x)


@dataclass(frozen=True)
class CopyTasks:
    """Many CopyTasks of one shape, stacked: clean, corrupted (draws, seq); correct, wrong (draws,).

    Every draw changes the same position, so one forward pass runs them all, and a claim about the
    copy circuit is read over many random sequences instead of one.
    """

    clean: torch.Tensor
    corrupted: torch.Tensor
    changed: int
    correct: torch.Tensor
    wrong: torch.Tensor

    def __len__(self) -> int:
        return len(self.clean)

    def metric(self, logits: torch.Tensor) -> torch.Tensor:
        """logit(correct) - logit(wrong) at the last position, per draw: logits (draws, seq, vocab) -> (draws,)."""
        rows = torch.arange(len(self.correct), device=logits.device)
        last = logits[:, -1].float()                                              # (draws, vocab)
        return last[rows, self.correct.to(logits.device)] - last[rows, self.wrong.to(logits.device)]


def corrupted_copy_tasks(vocab, seeds, span: int = 12, j: int = 6, bos_id: int = 1) -> CopyTasks:
    """corrupted_copy_task for each seed, stacked into one batch (see CopyTasks)."""
    tasks = [corrupted_copy_task(vocab, span, j, seed, bos_id) for seed in seeds]
    if not tasks:
        raise ValueError("give at least one seed")
    return CopyTasks(torch.cat([t.clean for t in tasks]), torch.cat([t.corrupted for t in tasks]), tasks[0].changed,
                     torch.tensor([t.correct for t in tasks]), torch.tensor([t.wrong for t in tasks]))
