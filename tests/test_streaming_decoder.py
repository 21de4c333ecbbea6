"""Streaming text while generating: a character outside the vocabulary arrives as one byte piece per UTF-8 byte,
and nothing printed may be a replacement character that the next byte would have completed. Checked on the
decoder, through me.chat's stream, and through lesson 06's own streaming cell."""
from __future__ import annotations

import contextlib
import importlib
import io
import types
from pathlib import Path

import jupytext
import pytest

import mistral_edu as me

# An emoji, accented Latin and CJK: each sample holds characters the vocabulary has as pieces and characters it
# spells in bytes (ǿ, ṏ, 龘, 🦙), so both paths are crossed.
SAMPLES = ["Llama 🦙 ok", "Grüße, ǿ and ṏ", "東京 龘 雨", "🦙🦙", "ꦲꦏ꧀ꦱꦫ"]
LESSON_06 = Path(__file__).resolve().parents[1] / "notebooks" / "src" / "06_kv_cache_generation.md"


def is_byte_spelled(tokenizer, text: str) -> bool:
    return any(tokenizer.sp.is_byte(i) for i in tokenizer.encode(text, bos=False))


@pytest.mark.parametrize("text", SAMPLES)
def test_pieces_are_final_and_add_up_to_the_text(tokenizer, text):
    assert is_byte_spelled(tokenizer, text)
    decoder = tokenizer.streaming_decoder()
    parts = [decoder.push(i) for i in tokenizer.encode(text, bos=False)] + [decoder.finish()]
    assert "".join(parts) == text
    assert not any("\ufffd" in part for part in parts), parts


def test_growing_list_decoding_is_the_bug_this_fixes(tokenizer):
    ids = tokenizer.encode("Llama 🦙 ok", bos=False)
    printed = "".join(tokenizer.decode(ids[:i + 1])[len(tokenizer.decode(ids[:i])):] for i in range(len(ids)))
    assert printed == "Llama \ufffd\ufffd\ufffd ok"


def test_an_unfinished_character_is_held_until_finish(tokenizer):
    ids = tokenizer.encode("x🦙", bos=False)[:-1]                # the emoji's last byte never arrives
    decoder = tokenizer.streaming_decoder()
    assert "".join(decoder.push(i) for i in ids) == "x"
    assert decoder.finish() == tokenizer.decode(ids)[1:]         # what sentencepiece makes of the broken bytes
    assert decoder.finish() == ""


def test_an_invalid_byte_is_not_held(tokenizer):
    """A continuation byte with no lead byte can never become a character: it is shown at once, as U+FFFD."""
    decoder = tokenizer.streaming_decoder()
    assert decoder.push(3 + 0x9F) == tokenizer.decode([3 + 0x9F])


def scripted_generate(tokenizer, text: str):
    """A stand-in for generate that 'chooses' the ids of text, one at a time, then EOS."""
    def generate(model, prompt_tokens, max_new_tokens=64, stream=None, **settings):
        ids = tokenizer.encode(text, bos=False) + [tokenizer.eos_id]
        for token in ids:
            stream(token)
        return ids
    return generate


@pytest.mark.parametrize("text", SAMPLES)
def test_chat_streams_multibyte_text_whole(tokenizer, monkeypatch, text):
    monkeypatch.setattr(importlib.import_module("mistral_edu.generation.generate"), "generate",
                        scripted_generate(tokenizer, text))
    parts = []
    reply = me.chat(None, tokenizer, [{"role": "user", "content": "Say it."}], stream=parts.append)
    assert reply == "".join(parts) == text
    assert not any("\ufffd" in part for part in parts), parts


def lesson_cell(marker: str) -> str:
    cells = [cell.source for cell in jupytext.read(LESSON_06, fmt="md").cells
             if cell.cell_type == "code" and marker in cell.source]
    assert len(cells) == 1, f"lesson 06 should have one code cell with {marker!r}, found {len(cells)}"
    return cells[0]


@pytest.mark.parametrize("text", SAMPLES)
def test_lesson_06_streaming_cell_prints_multibyte_text_whole(tokenizer, text):
    """The cell as the lesson has it, with generate replaced by a script of the sample's ids."""
    fake_me = types.SimpleNamespace(generate=scripted_generate(tokenizer, text))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(lesson_cell("stream=show"), {"me": fake_me, "tok": tokenizer, "model": None, "big": False})
    assert printed.getvalue() == text + "\n"
