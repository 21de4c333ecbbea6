"""The real Mistral tokenizer (sentencepiece BPE, 32000 pieces, byte fallback) and the v1 chat format.

In this version "[INST]" is ordinary text, not a special token: the chat template is built from
plain strings, and only BOS (1) and EOS (2) are special. mistral-common's MistralTokenizer.v1() is
the reference our tests compare against.
"""
from __future__ import annotations

import codecs
import hashlib
import importlib.util
from pathlib import Path

import sentencepiece

# sha256 of mistral_common/data/tokenizer.model.v1: the file shipped with Mistral-7B-Instruct-v0.1/v0.2.
V1_SHA256 = "dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055"
ROLES = ("system", "user", "assistant")


def mistral_common_v1_path() -> Path:
    """The tokenizer.model.v1 that the mistral-common package ships, checked by its sha256.

    The package is only located, not imported: its data file is all that is needed.
    """
    spec = importlib.util.find_spec("mistral_common")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the default tokenizer comes from the mistral-common package: "
                          "pip install mistral-common (or pass the path of a tokenizer.model)")
    path = Path(spec.submodule_search_locations[0]) / "data" / "tokenizer.model.v1"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall mistral-common")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != V1_SHA256:
        raise ValueError(f"{path} has sha256 {digest}, not the v1 tokenizer's {V1_SHA256}; reinstall mistral-common")
    return path


class Tokenizer:
    """Text <-> token ids, pieces, and the [INST] chat template of Mistral-7B-Instruct v0.1/v0.2."""

    def __init__(self, model_file: str | Path):
        self.path = Path(model_file)
        if not self.path.is_file():
            raise FileNotFoundError(f"tokenizer file {self.path} does not exist")
        try:
            self.sp = sentencepiece.SentencePieceProcessor(model_file=str(self.path))
        except (RuntimeError, OSError) as err:
            raise ValueError(f"{self.path} is not a sentencepiece model ({err})") from err

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    @property
    def bos_id(self) -> int:
        return self.sp.bos_id()

    @property
    def eos_id(self) -> int:
        return self.sp.eos_id()

    @property
    def unk_id(self) -> int:
        return self.sp.unk_id()

    def encode(self, text: str, bos: bool = True, eos: bool = False) -> list[int]:
        """Token ids of text, with BOS in front and EOS after when asked."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, got {type(text).__name__}")
        return [self.bos_id] * bos + self.sp.encode(text) + [self.eos_id] * eos

    def decode(self, ids) -> str:
        """Text of token ids; BOS/EOS decode to nothing, byte pieces are reassembled into UTF-8."""
        ids = [int(i) for i in ids]
        self._check_ids(ids)
        return self.sp.decode(ids)

    def streaming_decoder(self) -> StreamingDecoder:
        """A decoder for ids that arrive one at a time, which hands out only text that is final."""
        return StreamingDecoder(self)

    def id_to_piece(self, i: int) -> str:
        """The vocabulary entry of an id, e.g. 1 -> '<s>', 22557 -> '▁Hello', 3 -> '<0x00>'."""
        self._check_ids([int(i)])
        return self.sp.id_to_piece(int(i))

    def pieces(self, text: str) -> list[str]:
        """The pieces text splits into (no BOS), as the vocabulary spells them."""
        return [self.sp.id_to_piece(i) for i in self.encode(text, bos=False)]

    def _check_ids(self, ids: list[int]) -> None:
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"token id {bad[0]} is outside the vocabulary 0..{self.vocab_size - 1}")

    def encode_chat(self, messages: list[dict]) -> list[int]:
        """<s>[INST] user [/INST] answer</s>[INST] next [/INST], as mistral-common's v1 encodes it.

        A leading system message is joined to the first user message with a blank line; after it,
        user and assistant must alternate, starting with the user.
        """
        system, turns = split_system(messages)
        ids = [self.bos_id]
        for i, message in enumerate(turns):
            content = message["content"]
            if message["role"] == "user":
                if i == 0 and system:
                    content = system + "\n\n" + content
                ids += self.sp.encode(f"[INST] {content} [/INST]")
            else:
                ids += self.sp.encode(content) + [self.eos_id]
        return ids


class StreamingDecoder:
    """Text of ids that arrive one at a time (a stream), handed out as it becomes final.

    A character outside the vocabulary arrives as one byte piece per UTF-8 byte (🦙 is four). Decoding the ids so
    far while such a character is half-arrived gives U+FFFD replacement characters that the next byte would have
    turned into the character, so the trailing bytes of an unfinished character are held back until it completes.
    """

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.shown = ""

    def push(self, token_id: int) -> str:
        """The text that token_id completes: possibly empty, while a multi-byte character is unfinished."""
        self.ids.append(int(token_id))
        return self._show(self.ids[:len(self.ids) - self.unfinished_bytes()])

    def finish(self) -> str:
        """Whatever is still held back (an unfinished character decodes to U+FFFD): call it once, at the end."""
        return self._show(self.ids)

    def unfinished_bytes(self) -> int:
        """How many trailing ids are byte pieces of a UTF-8 character that is not complete yet."""
        trailing = bytearray()
        for i in reversed(self.ids[-4:]):                     # a UTF-8 character is at most 4 bytes
            if not self.tokenizer.sp.is_byte(i):
                break
            trailing.insert(0, int(self.tokenizer.sp.id_to_piece(i)[3:5], 16))   # '<0xF0>' -> 0xF0
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        utf8.decode(bytes(trailing), final=False)
        return len(utf8.getstate()[0])                        # bytes it still waits on to finish a character

    def _show(self, ids: list[int]) -> str:
        text = self.tokenizer.decode(ids)
        new, self.shown = text[len(self.shown):], text
        return new


def split_system(messages: list[dict]) -> tuple[str | None, list[dict]]:
    """Validate a conversation; return its system prompt and the alternating user/assistant turns."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise ValueError(f"message {i} must be a dict with role in {ROLES} and a str content, got {m!r}")
    system = None
    if messages[0]["role"] == "system":
        system, messages = messages[0]["content"], list(messages[1:])
    for i, m in enumerate(messages):
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            where = "a system message may only come first" if m["role"] == "system" else \
                "user and assistant must alternate, starting with the user"
            raise ValueError(f"message {i + (system is not None)} has role {m['role']!r} where "
                             f"{expected!r} was expected: {where}")
    if not messages:
        raise ValueError("the conversation has no user message")
    return system, messages
