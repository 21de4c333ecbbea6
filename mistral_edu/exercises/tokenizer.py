"""Tokenizer exercises (notebook 01): BPE from the pieces and scores, the chat template by hand, and
byte-fallback pieces back to text.

The chat reference is the tokenizer's own encode_chat (equal to mistral-common's v1 template).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .catalogue import Exercise, register
from .verdict import Verdict, WrongAnswer, as_number, attempt, check

__all__ = ["bpe_tables", "check_bpe_encode", "check_bytes_to_text", "check_chat_ids"]

CHAT_IDS = register(Exercise(
    name="chat_ids", notebook="01", difficulty=2, minutes=15,
    task="write my_chat_ids(messages): the token ids of a conversation (optionally starting with a system "
         "message), using only tok.encode, tok.bos_id and tok.eos_id",
    hints=("the template is <s>[INST] user [/INST] answer</s>[INST] ...: one BOS at the very start, each part "
           "encoded on its own, and EOS after every answer; v1 has no system role, so the system prompt joins "
           "the FIRST user message",
           "start the list with BOS; add each user turn's bracketed text encoded without a BOS, and each answer "
           "encoded the same way followed by the EOS id; the first user turn's text is the system prompt, a "
           "blank line, then the user's words"),
    solution='''def my_chat_ids(messages):
    ids = [tok.bos_id]
    system = messages[0]["content"] if messages[0]["role"] == "system" else None
    turns = messages[1:] if system is not None else messages
    for i, m in enumerate(turns):
        if m["role"] == "user":
            content = f"{system}\\n\\n{m['content']}" if i == 0 and system else m["content"]
            ids += tok.encode(f"[INST] {content} [/INST]", bos=False)
        else:
            ids += tok.encode(m["content"], bos=False) + [tok.eos_id]
    return ids''',
))

BYTES_TO_TEXT = register(Exercise(
    name="bytes_to_text", notebook="01", difficulty=1, minutes=10,
    task="write bytes_to_text(pieces): the text that byte-fallback pieces like '<0xF0>' spell",
    hints=("each piece names one byte; a character outside ASCII takes 2 to 4 UTF-8 bytes, and a single byte of "
           "it is not a character on its own",
           "read the two hexadecimal digits of each piece as a number, collect all the numbers as bytes, and "
           "decode them together as UTF-8"),
    solution='''def bytes_to_text(pieces):
    return bytes(int(p[3:5], 16) for p in pieces).decode("utf-8")''',
))

CONVERSATIONS = [
    [{"role": "user", "content": "What is a token?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke."}],
    [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Good morning"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."},
     {"role": "assistant", "content": "Blue."}, {"role": "user", "content": "Another one?"}],
]


def _label(conv: list[dict]) -> str:
    return "the conversation " + "/".join(m["role"] for m in conv)


def chat_template(tok, conv: list[dict], bos_each: bool = False, eos: bool = True, system: str = "first",
                  joiner: str = "\n\n", spaces: bool = True) -> list[int]:
    """The v1 chat ids with one choice changed: where the system prompt goes, BOS/EOS, the joiner, the spaces.

    system is "first" (joined to the first user message, v1's rule), "last" (to the last one), "after" (after
    the first user message), or "turn" (a user turn of its own).
    """
    prompt = conv[0]["content"] if conv[0]["role"] == "system" else None
    turns = conv[1:] if prompt is not None else conv
    users = [i for i, m in enumerate(turns) if m["role"] == "user"]
    target = {"first": users[0], "last": users[-1], "after": users[0], "turn": None}[system]
    ids = [tok.bos_id]
    if prompt is not None and system == "turn":
        ids += tok.encode(f"[INST] {prompt} [/INST]", bos=bos_each)
    for i, m in enumerate(turns):
        if m["role"] == "user":
            content = m["content"]
            if prompt is not None and i == target:
                content = f"{content}{joiner}{prompt}" if system == "after" else f"{prompt}{joiner}{content}"
            ids += tok.encode(f"[INST] {content} [/INST]" if spaces else f"[INST]{content}[/INST]", bos=bos_each)
        else:
            ids += tok.encode(m["content"], bos=bos_each) + ([tok.eos_id] if eos else [])
    return ids


CHAT_SLIPS = {
    "each part starts with its own BOS: BOS comes once, at the very start": dict(bos_each=True),
    "an answer must end with EOS (tok.eos_id): that is how the model learnt to stop": dict(eos=False),
    "the system prompt is not a turn of its own in v1: it goes in front of the first user message, followed by a "
    "blank line": dict(system="turn"),
    "you joined the system prompt to the LAST user message; v1 puts it in front of the FIRST one (mistral-common "
    "does, and so does encode_chat)": dict(system="last"),
    "the system prompt goes in FRONT of the first user message, not after it": dict(system="after"),
    "the system prompt and the user message are separated by a blank line (two newlines)": dict(joiner="\n"),
    "the system prompt and the user message are separated by a blank line (two newlines), not a space":
        dict(joiner=" "),
    "[INST] and [/INST] are separated from the content by a space on each side": dict(spaces=False),
}


def _ids(value) -> list[int]:
    """A learner's ids as a list of ints: a list, tuple, numpy array or 1-D tensor of whole numbers."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        value = value.reshape(-1).tolist()
    if not isinstance(value, (list, tuple)):
        raise WrongAnswer(f"return the token ids as a list of ints, got {type(value).__name__}")
    return [int(as_number(i, "token ids as ints")) for i in value]


def check_chat_ids(fn: Callable[[list[dict]], list[int]] | None, tok) -> Verdict:
    """fn(messages) -> ids: a learner's chat template, against tok.encode_chat on four conversations.

    The last one has a system message and two user turns, so the system prompt's place is tested.
    """

    def verify(fn) -> str | None:
        got = [_ids(attempt(fn, [dict(m) for m in conv])) for conv in CONVERSATIONS]
        expected = [tok.encode_chat(conv) for conv in CONVERSATIONS]
        if got == expected:
            return None
        for why, options in CHAT_SLIPS.items():
            if all(g == chat_template(tok, conv, **options) for g, conv in zip(got, CONVERSATIONS)):
                return why
        i = next(i for i, (g, e) in enumerate(zip(got, expected)) if g != e)
        return _chat_difference(tok, _label(CONVERSATIONS[i]), got[i], expected[i])

    return check(CHAT_IDS, fn, verify, "your template gives exactly the ids of encode_chat (and of mistral-common v1)")


def _first_difference(tok, label: str, got: list[int], expected: list[int]) -> str:
    """Where two id lists first part, with the next few pieces of each."""
    first = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
    shown_got = [tok.id_to_piece(i) if 0 <= i < tok.vocab_size else i for i in got[first:first + 4]]
    shown_expected = [tok.id_to_piece(i) for i in expected[first:first + 4]]
    return f"for {label}: first difference at position {first}: you have {shown_got}, expected {shown_expected}"


def _chat_difference(tok, label: str, got: list[int], expected: list[int]) -> str:
    if not got or got[0] != tok.bos_id:
        return f"for {label}: the ids must start with BOS = {tok.bos_id}"
    return _first_difference(tok, label, got, expected)


def check_bytes_to_text(fn: Callable[[list[str]], str] | None) -> Verdict:
    """fn(pieces): byte-fallback pieces like '<0xF0>' reassembled into the UTF-8 text they spell."""
    cases = [["<0xF0>", "<0x9F>", "<0xA6>", "<0x99>"], ["<0xE2>", "<0x82>", "<0xAC>"], ["<0x41>", "<0x42>"],
             ["<0x43>", "<0xC3>", "<0xA9>"]]

    def slips(raw: bytes, pieces: list[str]) -> dict[str, str]:
        return {
            "each byte became a character of its own (chr): collect the bytes first, then decode them together as "
            "UTF-8": raw.decode("latin-1"),
            "the pieces are the names of bytes, not text: turn each into its byte": "".join(pieces),
            "you decoded the bytes one at a time: a single byte of a multi-byte character is not a character, so "
            "decode them together": "".join(bytes([b]).decode("utf-8", "replace") for b in raw),
            "you decoded the bytes one at a time and dropped the errors: a single byte of a multi-byte character is "
            "not a character, so decode them together": "".join(bytes([b]).decode("utf-8", "ignore") for b in raw),
            "that is the bytes written in hexadecimal; the text is what those bytes spell in UTF-8": raw.hex().upper(),
        }

    def verify(fn) -> str | None:
        results = []
        for pieces in cases:
            got = attempt(fn, list(pieces))
            if not isinstance(got, str):
                raise WrongAnswer(f"return the text as a str, got {type(got).__name__}")
            results.append(got)
        raws = [bytes(int(p[3:5], 16) for p in pieces) for pieces in cases]
        wrong = [i for i, (got, raw) in enumerate(zip(results, raws)) if got != raw.decode("utf-8")]
        if not wrong:
            return None
        for why in slips(raws[0], cases[0]):
            if all(got == slips(raw, pieces)[why] for got, raw, pieces in zip(results, raws, cases)):
                return why
        i = wrong[0]
        return f"{cases[i]} gave {results[i]!r}, expected {raws[i].decode('utf-8')!r}"

    return check(BYTES_TO_TEXT, fn, verify, "four pieces, one emoji: bytes are reassembled before they become text")


BPE_ENCODE = register(Exercise(
    name="bpe_encode", notebook="01", difficulty=3, minutes=20,
    task="write bpe_encode(text, vocab, scores): the token ids sentencepiece gives `text` (without BOS), from "
         "vocab (piece -> id) and scores (id -> score) alone: spaces become '▁', one '▁' goes in front, the text "
         "starts as single characters, and the adjacent pair whose concatenation is a piece with the highest score "
         "is merged, again and again, until no pair is a piece",
    hints=("BPE builds a word from its letters up: each merge joins two neighbours into a longer piece, and the "
           "score ranks the merges (a higher score was learnt earlier, from more frequent pairs); sentencepiece "
           "marks word starts with '▁', so a space is part of the next word",
           "normalise the text first, then keep a list of symbols; in each round look at every neighbouring pair, "
           "keep the one whose joined string is in the vocabulary with the best score (the leftmost on a tie), "
           "join it, and stop when no pair is in the vocabulary; look the final symbols up"),
    solution='''def bpe_encode(text, vocab, scores):
    symbols = list("▁" + text.replace(" ", "▁"))                 # sentencepiece's normalisation
    while True:
        pairs = [(scores[vocab[a + b]], -i) for i, (a, b) in enumerate(zip(symbols, symbols[1:])) if a + b in vocab]
        if not pairs:
            return [vocab[s] for s in symbols]
        i = -max(pairs)[1]                                         # best score, leftmost on a tie
        symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]''',
))

BPE_TEXTS = ["Hello world", "grouped rotary embeddings", "aaaaaaa", "a seahorse on the rooftop", "interpretability"]


def bpe_reference(text: str, vocab: dict[str, int], scores: list[float], prefix: bool = True, spaces: bool = True,
                  choose: str = "best") -> list[int]:
    """sentencepiece's BPE with one rule changed: the '▁' prefix, spaces as '▁', which mergeable pair goes first.

    choose: "best" (highest score, leftmost on a tie: the real rule), "worst" (lowest score) or "leftmost"
    (the first pair that is a piece, whatever its score). A symbol missing from vocab becomes id 0 (unk).
    """
    text = text.replace(" ", "▁") if spaces else text
    symbols = list(("▁" if prefix else "") + text)
    while True:
        pairs = [(scores[vocab[a + b]], i) for i, (a, b) in enumerate(zip(symbols, symbols[1:])) if a + b in vocab]
        if not pairs:
            return [vocab.get(s, 0) for s in symbols]
        if choose == "best":
            i = max(pairs, key=lambda p: (p[0], -p[1]))[1]
        elif choose == "worst":
            i = min(pairs, key=lambda p: (p[0], p[1]))[1]
        else:
            i = pairs[0][1]
        symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]


BPE_SLIPS = {
    "the first piece lacks its '▁': sentencepiece puts one '▁' in front of the text, as if it followed a space":
        dict(prefix=False),
    "spaces stay spaces: sentencepiece replaces each by '▁' before merging (no piece contains ' ')": dict(spaces=False),
    "you merged the pair with the LOWEST score first: the highest score wins": dict(choose="worst"),
    "you merged the first pair that is a piece, from the left (on these words that is also what greedy longest "
    "match, WordPiece's rule, gives): BPE merges the pair with the highest score first, wherever it is":
        dict(choose="leftmost"),
}


def bpe_tables(tok) -> tuple[dict[str, int], list[float]]:
    """The two tables BPE needs: {piece: id} and the score of every id, read from the sentencepiece model."""
    return ({tok.id_to_piece(i): i for i in range(tok.vocab_size)},
            [tok.sp.get_score(i) for i in range(tok.vocab_size)])


def check_bpe_encode(fn: Callable[[str, dict, list], list[int]] | None, tok) -> Verdict:
    """fn(text, vocab, scores) -> ids equal to tok.encode(text, bos=False) on words with no byte fallback."""
    vocab, scores = bpe_tables(tok)

    def verify(fn) -> str | None:
        got = [_ids(attempt(fn, text, vocab, scores)) for text in BPE_TEXTS]
        expected = [tok.encode(text, bos=False) for text in BPE_TEXTS]
        if got == expected:
            return None
        for why, options in BPE_SLIPS.items():
            if all(g == bpe_reference(text, vocab, scores, **options) for g, text in zip(got, BPE_TEXTS)):
                return why
        i = next(i for i, (g, e) in enumerate(zip(got, expected)) if g != e)
        return _first_difference(tok, repr(BPE_TEXTS[i]), got[i], expected[i])

    return check(BPE_ENCODE, fn, verify, "your BPE gives sentencepiece's ids, merge by merge")
