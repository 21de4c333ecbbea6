"""Tokenizer exercises (notebook 01): the chat template by hand, and byte-fallback pieces back to text.

The chat reference is the tokenizer's own encode_chat (equal to mistral-common's v1 template).
"""
from __future__ import annotations

from typing import Callable

from .catalogue import Exercise, register
from .verdict import Verdict, attempt, check

__all__ = ["check_bytes_to_text", "check_chat_ids"]

CHAT_IDS = register(Exercise(
    name="chat_ids", notebook="01", difficulty=2, minutes=15,
    task="write my_chat_ids(messages): the token ids of a conversation (optionally starting with a system "
         "message), using only tok.encode, tok.bos_id and tok.eos_id",
    hints=("the template is <s>[INST] user [/INST] answer</s>[INST] ...: one BOS at the very start, each part "
           "encoded on its own, and EOS after every answer; v0.2 has no system role, so the system prompt joins "
           "the first user message",
           "ids = [tok.bos_id]; a user turn is tok.encode(f'[INST] {content} [/INST]', bos=False); an answer is "
           "tok.encode(answer, bos=False) + [tok.eos_id]; the first user content becomes f'{system}\\n\\n{content}'"),
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
           "int(piece[3:5], 16) turns '<0xF0>' into 240; collect all the bytes in bytes([...]) and decode them "
           "together with .decode('utf-8')"),
    solution='''def bytes_to_text(pieces):
    return bytes(int(p[3:5], 16) for p in pieces).decode("utf-8")''',
))

CONVERSATIONS = [
    [{"role": "user", "content": "What is a token?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke."}],
    [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Good morning"}],
]


def _chat_slips(tok, conv: list[dict]) -> dict[str, list[int]]:
    """The ids each usual slip gives for one conversation (messages without a system role)."""
    def template(bos_each: bool = False, eos: bool = True, system_turn: bool = False) -> list[int]:
        ids = [tok.bos_id]
        for m in conv:
            if m["role"] == "user" or (m["role"] == "system" and system_turn):
                ids += tok.encode(f"[INST] {m['content']} [/INST]", bos=bos_each)
            elif m["role"] == "assistant":
                ids += tok.encode(m["content"], bos=bos_each) + ([tok.eos_id] if eos else [])
        return ids
    return {"each part starts with its own BOS: BOS comes once, at the very start (encode with bos=False)":
                template(bos_each=True),
            "an answer must end with EOS (tok.eos_id): that is how the model learnt to stop": template(eos=False),
            "the system prompt is not a turn of its own in v0.2: put it in front of the first user message, "
            "followed by a blank line": template(system_turn=True)}


def check_chat_ids(fn: Callable[[list[dict]], list[int]] | None, tok) -> Verdict:
    """fn(messages) -> ids: a learner's chat template, against tok.encode_chat on three conversations."""

    def verify(fn) -> str | None:
        for conv in CONVERSATIONS:
            got = [int(i) for i in attempt(fn, conv)]
            expected = tok.encode_chat(conv)
            if got == expected:
                continue
            roles = "/".join(m["role"] for m in conv)
            slip = next((why for why, ids in _chat_slips(tok, conv).items() if ids == got and ids != expected), None)
            if slip:
                return f"for the conversation {roles}: {slip}"
            return _chat_difference(tok, roles, got, expected)
        return None

    return check(CHAT_IDS, fn, verify, "your template gives exactly the ids of encode_chat (and of mistral-common v1)")


def _chat_difference(tok, roles: str, got: list[int], expected: list[int]) -> str:
    first = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
    where = f"for the conversation {roles}: first difference at position {first}"
    if not got or got[0] != tok.bos_id:
        return where + " (the ids must start with BOS = 1)"
    shown_got = [tok.id_to_piece(i) for i in got[first:first + 4]]
    shown_expected = [tok.id_to_piece(i) for i in expected[first:first + 4]]
    return where + f": you have {shown_got}, expected {shown_expected}"


def check_bytes_to_text(fn: Callable[[list[str]], str] | None) -> Verdict:
    """fn(pieces): byte-fallback pieces like '<0xF0>' reassembled into the UTF-8 text they spell."""
    cases = [["<0xF0>", "<0x9F>", "<0xA6>", "<0x99>"], ["<0xE2>", "<0x82>", "<0xAC>"], ["<0x41>", "<0x42>"]]

    def verify(fn) -> str | None:
        for pieces in cases:
            raw = bytes(int(p[3:5], 16) for p in pieces)
            expected = raw.decode("utf-8")
            got = attempt(fn, list(pieces))
            if got == expected:
                continue
            slips = {raw.decode("latin-1"): "each byte became a character of its own (chr): collect the bytes "
                                            "first, then decode them together as UTF-8",
                     "".join(pieces): "the pieces are the names of bytes, not text: turn each into its byte",
                     "".join(bytes([b]).decode("utf-8", "replace") for b in raw):
                         "you decoded the bytes one at a time: a single byte of a multi-byte character is not a "
                         "character, so decode them together"}
            return slips.get(got, f"{pieces} gave {got!r}, expected {expected!r}")
        return None

    return check(BYTES_TO_TEXT, fn, verify, "four pieces, one emoji: bytes are reassembled before they become text")
