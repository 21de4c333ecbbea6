"""generate and chat: prefill the prompt once, then one token at a time through the KV cache (greedy_continuations:
the same for a batch of equal-length prompts)."""
from __future__ import annotations

from typing import Callable

import torch

from .fast_path import FastDecoder, fast_path_applies
from .fusion import fuse_projections
from .sampling import sample_next
from ..model.kv_cache import KVCache


def _check_settings(max_new_tokens, temperature, top_p):
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 is greedy), got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


@torch.no_grad()
def generate(model, prompt_tokens, max_new_tokens: int = 64, temperature: float = 0.0, top_p: float = 1.0,
             seed: int | None = None, stream: Callable[[int], None] | None = None,
             stop_at_eos: bool = True, eos_id: int = 2, fast: bool = True,
             decoder: FastDecoder | None = None) -> list[int]:
    """New token ids after prompt_tokens (a list of ids), using the KV cache; stops after EOS.

    stream(token_id) is called as each token is chosen, for printing while generating.
    fast=False always runs model.forward, the path the notebooks explain. fast=True (the default)
    takes fast_path.py's path (static cache, fused matmuls, a CUDA graph on GPUs) unless a hook of any
    kind is attached (model.hooks(), torch's hooks on any module, torch's global module hooks: checked
    at the start of every call, so one attached from stream applies from the next call) or a sliding
    window is shorter than the generation. The fast path first calls
    fuse_projections(model): once per model, wq|wk|wv and w1|w3 become rows of one matrix each (same
    parameters, same values, new storage layout; see fusion.py).
    decoder: a FastDecoder you keep, to reuse its cache and, on a GPU, its captured CUDA graph across
    calls. Without one, each call builds its own and frees it on return.
    """
    _check_settings(max_new_tokens, temperature, top_p)
    prompt = torch.as_tensor(list(prompt_tokens), dtype=torch.long, device=model.device)[None]  # (1, prompt)
    if prompt.shape[1] == 0:
        raise ValueError("the prompt is empty: pass at least one token (BOS = 1 for an empty text)")
    total = prompt.shape[1] + max_new_tokens
    if total > model.cfg.max_seq_len:
        raise ValueError(f"prompt ({prompt.shape[1]}) + max_new_tokens ({max_new_tokens}) = {total} exceeds "
                         f"the context of {model.cfg.max_seq_len}; shorten one of them")
    _check_decoder(decoder, model, total)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=model.device).manual_seed(seed)
    new: list[int] = []
    if max_new_tokens == 0:
        return new
    model.check_tokens(prompt)
    if fast and fast_path_applies(model, total):
        fuse_projections(model)
        path = decoder or FastDecoder.sized_for(model, total, max_new_tokens)
    else:
        path = PlainDecoder(model, total)
    logits = path.prefill(prompt)                                                # (1, vocab)
    while True:
        token = int(sample_next(logits, temperature, top_p, generator))
        new.append(token)
        if stream is not None:
            stream(token)
        if (stop_at_eos and token == eos_id) or len(new) == max_new_tokens:
            return new
        logits = path.decode(token)                                              # (1, vocab)


@torch.no_grad()
def greedy_continuations(model, prompts: torch.Tensor, max_new_tokens: int, eos_id: int = 2) -> list[list[int]]:
    """Greedy continuations of equal-length prompts (batch, prompt), all rows at once through one KV cache.

    The same steps as me.generate (prefill once, then one position per token), batched so that
    comparing many steering scales costs one forward pass per token, not one per prompt and token.
    Each row is cut after its first EOS, as generate would stop there.
    """
    cache = KVCache.for_model(model, batch=prompts.shape[0], max_seq_len=prompts.shape[1] + max_new_tokens)
    logits = model(prompts.to(model.device), cache=cache, last_only=True)[:, -1]  # (batch, vocab)
    new = []
    for step in range(max_new_tokens):
        token = logits.argmax(-1, keepdim=True)                                    # (batch, 1)
        new.append(token)
        if step + 1 < max_new_tokens:
            logits = model(token, cache=cache, check_ids=False)[:, -1]             # (batch, vocab)
    rows = torch.cat(new, dim=1).tolist()                                          # (batch, max_new_tokens)
    return [row[:row.index(eos_id) + 1] if eos_id in row else row for row in rows]


def _check_decoder(decoder: FastDecoder | None, model, total: int) -> None:
    if decoder is None:
        return
    if decoder.model is not model:
        raise ValueError("this decoder was built for another model; build one with FastDecoder(model, max_seq_len)")
    if decoder.slots < total:
        raise ValueError(f"prompt + max_new_tokens = {total} positions, but the decoder holds {decoder.slots}; "
                         f"build one with FastDecoder(model, max_seq_len={total}) or more")


class PlainDecoder:
    """The readable path: model.forward through a KVCache, so every hook sees every step."""

    def __init__(self, model, total_len: int):
        self.model = model
        self.cache = KVCache.for_model(model, batch=1, max_seq_len=total_len)

    def prefill(self, prompt: torch.Tensor) -> torch.Tensor:
        return self.model(prompt, cache=self.cache, last_only=True)[:, -1]                    # (1, vocab)

    def decode(self, token: int) -> torch.Tensor:
        """One sampled token through the cache; it came from the model's own logits, so it is a valid id
        and checking it would only cost a device sync per step."""
        step = torch.tensor([[token]], device=self.model.device)                              # (1, 1)
        return self.model(step, cache=self.cache, check_ids=False)[:, -1]                     # (1, vocab)


def chat(model, tokenizer, messages: list[dict], max_new_tokens: int = 256, temperature: float = 0.0,
         top_p: float = 1.0, seed: int | None = None, stream: Callable[[str], None] | None = None) -> str:
    """The assistant's reply to a conversation, as text; stream(text_so_far_delta) prints as it goes."""
    ids = tokenizer.encode_chat(messages)
    if messages[-1]["role"] != "user":
        raise ValueError("the last message must be the user's: the model answers it")
    text = tokenizer.streaming_decoder()    # holds back a multi-byte character until its last byte arrives

    def on_token(token: int) -> None:
        new = text.push(token)
        if stream is not None and new:
            stream(new)

    generate(model, ids, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed,
             stream=on_token, eos_id=tokenizer.eos_id)
    rest = text.finish()
    if stream is not None and rest:
        stream(rest)
    return text.shown
