"""Every measurement the embedded default's card and test quote, in one dict, on its shipped held-out text.

One function so that the card, the test, training's evaluation and the lessons read the same numbers
from the same definitions (analysis.copying, analysis.next_token).
"""
from __future__ import annotations

import numpy as np
import torch

from ..default import corpus
from .copying import (CAT_PROMPT, greedy_next_piece, natural_copy_drops, prose_induction_scores,
                      prose_previous_token_scores, random_word_induction_scores, sentence_copy_drops)
from .heads import top_heads
from .next_token import (heldout_windows, min_logit, never_trained_types, nucleus_sizes, position_bucket_losses,
                         token_losses, type_mass, window_loss)

NOTEBOOK_05_PROMPT = "The Eiffel Tower is in the city of"


def heldout_stream(tokenizer) -> np.ndarray:
    """The shipped held-out documents (default/heldout.txt) as one id stream, each document after a BOS."""
    return corpus.tokenize_documents(tokenizer, corpus.heldout_sample())


def copying_targets(model, tokenizer, stream) -> dict:
    """Natural-text copying: copy drops (mean and 10th percentile), the cat prompt, and the best heads."""
    natural = natural_copy_drops(model, stream)
    sentences = sentence_copy_drops(model, tokenizer)
    text = tokenizer.decode(stream.tolist())
    return {"natural_copy_drop": natural.mean().item(), "natural_copy_drop_p10": natural.quantile(0.1).item(),
            "sentence_copy_drop": sentences.mean().item(), "sentence_copy_drop_min": sentences.min().item(),
            "cat_next": greedy_next_piece(model, tokenizer, CAT_PROMPT),
            "prose_induction": top_heads(prose_induction_scores(model, stream), 2),
            "random_word_induction": top_heads(random_word_induction_scores(model, tokenizer, text), 2),
            "prose_previous_token": top_heads(prose_previous_token_scores(model, stream), 2)}


def language_model_targets(model, tokenizer, stream) -> dict:
    """Loss by position and over every 128-token window; mass on never-trained types; nucleus sizes; finiteness.

    The T = 1 mass and the losses cover all 283 windows; the T = 1.5 mass, the nucleus and the smallest
    logit cover 16 windows spread evenly over the stream (a sort of 32000 per position is the cost).
    """
    windows = heldout_windows(stream)                                                       # (283, 129)
    unseen = never_trained_types(corpus.train_types(), model.cfg.vocab_size)
    losses = token_losses(model, windows)                                                    # (283, 128)
    unseen_targets = torch.isin(windows[:, 1:], unseen)
    sample = windows[torch.linspace(0, len(windows) - 1, 16).long()]                          # (16, 129) spread over the stream
    prompt = torch.tensor([tokenizer.encode(NOTEBOOK_05_PROMPT, bos=True)])
    return {"window_loss": losses.mean().item(), "position_loss": position_bucket_losses(model, stream),
            "unseen_mass": type_mass(model, windows, unseen).mean().item(),
            "unseen_mass_t15": type_mass(model, sample, unseen, temperature=1.5).mean().item(),
            "unseen_mass_prompt": type_mass(model, prompt, unseen)[0, -1].item(),
            "nucleus_heldout_median": nucleus_sizes(model, sample).float().median().item(),
            "nucleus_prompt": int(nucleus_sizes(model, prompt)[0, -1]),
            "min_logit": min(min_logit(model, sample), min_logit(model, prompt)),
            "unseen_heldout_tokens": int(unseen_targets.sum()),
            "unseen_token_max_loss": losses[unseen_targets].max().item() if unseen_targets.any() else 0.0}


def default_targets(model, tokenizer) -> dict:
    """copying_targets and language_model_targets on the shipped held-out text (seconds on the 9M model)."""
    stream = heldout_stream(tokenizer)
    return {**copying_targets(model, tokenizer, stream), **language_model_targets(model, tokenizer, stream)}
