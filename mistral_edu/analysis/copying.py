"""In-context copying on natural text, with fixed definitions: what the default model's card, test and lessons quote.

A model that copies in Olsson et al.'s sense predicts the second occurrence of a passage from the
first, whatever the passage. Repeated random tokens show the mechanism in a laboratory; these
functions measure it on held-out prose and on sentences written for the test, so that a claim
about copying says which input it holds on. Each row is BOS, a span, then the same span again.
"""
from __future__ import annotations

import numpy as np
import torch

from ..default import corpus
from .next_token import token_losses
from .heads import induction_scores, previous_token_scores, repeated_random_tokens, word_token_ids

# Written for this measurement: in neither the King James Bible nor the Jargon File.
NEW_SENTENCES = (
    "The yellow bicycle leaned against the bakery wall all afternoon.",
    "My grandmother keeps her spare keys inside an old biscuit tin.",
    "The train to the coast was late because of a fallen tree.",
    "She painted the kitchen door green and forgot to close the window.",
    "Every morning the dog waits by the gate for the postman.",
    "We bought fresh bread, two lemons and a jar of honey at the market.",
    "The museum closes early on Sundays during the winter months.",
    "He lost his umbrella on the bus and walked home in the rain.",
    "The children built a small boat from paper and floated it on the pond.",
    "Our neighbour plays the piano every evening after dinner.",
    "The football match was cancelled when the field turned to mud.",
    "A blue kettle whistled on the stove while the soup was cooling.",
    "The library lends board games as well as books and films.",
    "Tomorrow the weather will be cloudy with a chance of light snow.",
    "The farmer sold his apples to a shop in the next village.",
    "Please leave your muddy boots on the mat by the back door.",
    "The little robot vacuum got stuck under the sofa again.",
    "Her sister studies chemistry at a university in the north.",
    "The baker wakes at four to light the ovens before dawn.",
    "A flock of geese flew over the parking lot in a long line.",
)

CAT_PROMPT = "The cat sat on the mat. The cat sat on the"
NATURAL_SPAN = 24      # tokens per repeated held-out span for the copy drop
PROSE_PERIOD = 20      # tokens per repeated passage for the induction score, as notebook 09 uses
N_SPANS = 40


def repeated_spans(stream, n: int, span: int, seed: int = 0, bos_id: int = 1) -> torch.Tensor:
    """(n, 1 + 2 * span): BOS, a span of stream drawn at random, then the same span again.

    Spans start at distinct offsets drawn uniformly (np.random.default_rng(seed)) among those whose
    span lies inside one document (contains no BOS), so every span is running text.
    """
    stream = np.asarray(stream)
    if stream.ndim != 1 or len(stream) < span + 1:
        raise ValueError(f"stream must be a 1-D id array longer than span = {span}, got shape {stream.shape}")
    is_bos = np.concatenate([[0], np.cumsum(stream == bos_id)])                  # (len + 1,)
    starts = np.flatnonzero(is_bos[span:] - is_bos[:-span] == 0)                 # offsets of BOS-free spans
    if len(starts) < n:
        raise ValueError(f"only {len(starts)} BOS-free spans of {span} tokens in the stream; ask for at most that many")
    chosen = np.sort(np.random.default_rng(seed).choice(starts, size=n, replace=False))
    spans = np.stack([stream[s:s + span] for s in chosen]).astype(np.int64)      # (n, span)
    bos = np.full((n, 1), bos_id, np.int64)
    return torch.from_numpy(np.concatenate([bos, spans, spans], axis=1))         # (n, 1 + 2 * span)


@torch.no_grad()
def copy_drops(model, rows: torch.Tensor, span: int) -> torch.Tensor:
    """(n,): per row, the mean loss of tokens 2..span of the first copy minus that of the second copy.

    Rows are BOS + span + the same span. The first token of each copy is left out of both means: it
    cannot be predicted from the first copy, so only tokens 2..span measure copying. A model that
    copies has a drop of several nats; one that only models language has a drop near 0.
    """
    if rows.dim() != 2 or rows.shape[1] != 1 + 2 * span:
        raise ValueError(f"rows must be (n, 1 + 2 * span) = (n, {1 + 2 * span}): BOS, a span, the span again; "
                         f"got {tuple(rows.shape)}")
    losses = token_losses(model, rows)                                           # (n, 2 * span)
    first, second = losses[:, 1:span], losses[:, span + 1:]                       # (n, span - 1) each
    return first.mean(-1) - second.mean(-1)


def natural_copy_drops(model, stream, n: int = N_SPANS, span: int = NATURAL_SPAN, seed: int = 0) -> torch.Tensor:
    """(n,): copy_drops on n held-out spans of `span` tokens (repeated_spans of the held-out stream)."""
    return copy_drops(model, repeated_spans(stream, n, span, seed), span)


def sentence_copy_drops(model, tokenizer, sentences=NEW_SENTENCES) -> torch.Tensor:
    """(len(sentences),): copy_drops of each sentence written twice (its tokens, then the same tokens)."""
    drops = []
    for text in sentences:
        ids = tokenizer.encode(text, bos=False)
        row = torch.tensor([[tokenizer.bos_id] + ids + ids])                     # (1, 1 + 2 * len(ids))
        drops.append(copy_drops(model, row, len(ids)))
    return torch.cat(drops)


@torch.no_grad()
def greedy_next_piece(model, tokenizer, text: str = CAT_PROMPT) -> str:
    """The piece the model ranks first after BOS + text (the CAT_PROMPT one is "▁mat" if it copies)."""
    ids = torch.tensor([tokenizer.encode(text, bos=True)], device=model.device)  # (1, seq)
    return tokenizer.id_to_piece(int(model(ids)[0, -1].argmax()))


def prose_induction_scores(model, stream, n: int = N_SPANS, span: int = PROSE_PERIOD, seed: int = 0) -> torch.Tensor:
    """(n_layers, n_heads) prefix-matching scores on n held-out passages of `span` tokens written twice.

    The score is notebook 09's (analysis.induction_score over the second copy's queries); natural text
    repeats words inside a passage, so a head may split its attention between several earlier matches.
    """
    return induction_scores(model, repeated_spans(stream, n, span, seed), span)


def random_word_induction_scores(model, tokenizer, text: str, n: int = N_SPANS, span: int = PROSE_PERIOD,
                                 seed: int = 0) -> torch.Tensor:
    """(n_layers, n_heads) prefix-matching scores on n rows of `span` random word-initial pieces of text, repeated."""
    rows = repeated_random_tokens(word_token_ids(tokenizer, text), n, span, seed, tokenizer.bos_id)
    return induction_scores(model, rows.to(model.device), span)


def prose_previous_token_scores(model, stream, n: int = 16, seq: int = 128, seed: int = 12345) -> torch.Tensor:
    """(n_layers, n_heads) previous-token scores on n windows of BOS + seq held-out tokens at random offsets.

    The windows are corpus.text_batch's with np.random.default_rng(seed): the default's test uses the same.
    """
    rows = corpus.text_batch(np.asarray(stream), np.random.default_rng(seed), n, seq)  # (n, 1 + seq)
    return previous_token_scores(model, torch.from_numpy(rows.astype(np.int64)).to(model.device))
