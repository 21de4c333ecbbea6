"""The tokenizer against sentencepiece itself and mistral-common's MistralTokenizer.v1()."""
from __future__ import annotations

import pytest
import sentencepiece
from hypothesis import example, given, settings
from hypothesis import strategies as st
from mistral_common.protocol.instruct.messages import AssistantMessage, SystemMessage, UserMessage
from mistral_common.protocol.instruct.request import ChatCompletionRequest
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

import mistral_edu as me
from mistral_edu.tokenizer import mistral_common_v1_path

SP = sentencepiece.SentencePieceProcessor(model_file=str(mistral_common_v1_path()))
MISTRAL_V1 = MistralTokenizer.v1()
# Any Unicode but lone surrogates (which no UTF-8 text can hold).
UNICODE = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)


def test_vocabulary_facts(tokenizer):
    assert (tokenizer.vocab_size, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id) == (32000, 0, 1, 2)
    assert [tokenizer.id_to_piece(i) for i in (0, 1, 2, 3, 258)] == ["<unk>", "<s>", "</s>", "<0x00>", "<0xFF>"]
    assert tokenizer.id_to_piece(22557) == "▁Hello"


def test_inst_is_ordinary_text_in_v1(tokenizer):
    assert tokenizer.encode("[INST]", bos=False) == [733, 16289, 28793]
    assert tokenizer.pieces("[INST]") == ["▁[", "INST", "]"]


def test_bos_and_eos(tokenizer):
    assert tokenizer.encode("Hello") == [1, 22557]
    assert tokenizer.encode("Hello", bos=False, eos=True) == [22557, 2]
    assert tokenizer.decode([1, 22557, 2]) == "Hello"


@settings(max_examples=150, deadline=None, database=None)
@given(UNICODE)
@example("héllo wörld — ça va? 日本語のテキスト 中文 한국어")
@example("emoji 😀👩‍👩‍👧🏳️‍🌈 and flags 🇫🇷")
@example("\x00\x01\x07\x1b[31m\x7f control\tchars\r\n")
@example("   leading, inner    runs,\n\n\n\ttabs\t\t and trailing   ")
@example(" ")
@example("")
@example("\u200b\ufeff\u2028\u00a0zero-width and odd spaces")
def test_encode_decode_round_trips_like_sentencepiece(tokenizer, text):
    ids = tokenizer.encode(text, bos=False)
    assert ids == SP.encode(text)
    assert ids == MISTRAL_V1.instruct_tokenizer.tokenizer.encode(text, bos=False, eos=False)
    assert tokenizer.decode(ids) == SP.decode(ids) == text


def mistral_common_chat(messages: list[dict]) -> list[int]:
    kinds = {"system": SystemMessage, "user": UserMessage, "assistant": AssistantMessage}
    request = ChatCompletionRequest(messages=[kinds[m["role"]](content=m["content"]) for m in messages])
    return MISTRAL_V1.encode_chat_completion(request).tokens


CHATS = {
    "one user turn": [{"role": "user", "content": "What is a KV cache?"}],
    "multi-turn": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
                   {"role": "user", "content": "Name three rivers."},
                   {"role": "assistant", "content": "Nile, Rhine, Po."}, {"role": "user", "content": "And a lake?"}],
    "system, one turn": [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Hello"}],
    "system, multi-turn": [{"role": "system", "content": "Be brief.\nNo lists."},
                           {"role": "user", "content": "What is RoPE?"},
                           {"role": "assistant", "content": "Rotary position embeddings."},
                           {"role": "user", "content": "  Why rotate?  "}],
    "unicode and newlines": [{"role": "user", "content": "日本語で答えて 😀\n\nplease"},
                             {"role": "assistant", "content": "はい。\n"},
                             {"role": "user", "content": "[INST] inside"}],
}


@pytest.mark.parametrize("name", list(CHATS))
def test_encode_chat_equals_mistral_common_v1(tokenizer, name):
    ours = tokenizer.encode_chat(CHATS[name])
    assert ours == mistral_common_chat(CHATS[name])
    assert ours[0] == tokenizer.bos_id and ours[-4:] == [733, 28748, 16289, 28793]  # "[/INST]"


def test_encode_chat_layout(tokenizer):
    ids = tokenizer.encode_chat([{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
                                 {"role": "assistant", "content": "A"}, {"role": "user", "content": "V"}])
    assert SP.decode(ids) == "[INST] S\n\nU [/INST] A [INST] V [/INST]"  # the space: "▁[" after EOS
    assert ids.count(tokenizer.eos_id) == 1 and ids.count(tokenizer.bos_id) == 1


@pytest.mark.parametrize("messages, message", [
    ([], r"messages must be a non-empty list"),
    ([{"role": "assistant", "content": "hi"}], r"message 0 has role 'assistant' where 'user' was expected"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
     r"message 1 has role 'user' where 'assistant' was expected: user and assistant must alternate"),
    ([{"role": "user", "content": "a"}, {"role": "system", "content": "s"}],
     r"message 1 has role 'system' .*a system message may only come first"),
    ([{"role": "system", "content": "s"}], r"the conversation has no user message"),
    ([{"role": "robot", "content": "a"}], r"message 0 must be a dict with role in"),
    ([{"role": "user", "content": None}], r"message 0 must be a dict with role in .* and a str content"),
    ("hello", r"messages must be a non-empty list"),
])
def test_bad_chats_are_refused(tokenizer, messages, message):
    with pytest.raises(ValueError, match=message):
        tokenizer.encode_chat(messages)


def test_encode_takes_text_only(tokenizer):
    with pytest.raises(TypeError, match=r"encode takes a str, got bytes"):
        tokenizer.encode(b"hello")


# ----------------------------------------------------------------------------- which file

def test_the_default_is_mistral_common_s_v1_checked_by_sha256(no_weights_anywhere, monkeypatch):
    assert me.load_tokenizer().path == mistral_common_v1_path()
    monkeypatch.setattr(me.tokenizer, "V1_SHA256", "0" * 64)
    with pytest.raises(ValueError, match=r"tokenizer\.model\.v1 has sha256 dadfd56d.* not the v1 tokenizer's 0+; "
                                         r"reinstall mistral-common"):
        me.load_tokenizer()


def test_a_weights_folder_s_tokenizer_wins(make_consolidated_checkpoint, no_weights_anywhere, monkeypatch):
    _, folder = make_consolidated_checkpoint(me.ModelConfig(dim=32, n_layers=1, head_dim=8, hidden_dim=64,
                                                            n_heads=4, n_kv_heads=2))
    (folder / "tokenizer.model").write_bytes(mistral_common_v1_path().read_bytes())
    assert me.load_tokenizer(folder).path == folder / "tokenizer.model"
    monkeypatch.setenv("MISTRAL_EDU_WEIGHTS", str(folder))
    assert me.load_tokenizer().path == folder / "tokenizer.model"


def test_tokenizer_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"has no tokenizer\.model; pass the file, or None"):
        me.load_tokenizer(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"tokenizer file .*missing\.model does not exist"):
        me.load_tokenizer(tmp_path / "missing.model")
    (tmp_path / "tokenizer.model").write_bytes(b"not a sentencepiece model")
    with pytest.raises(ValueError, match=r"tokenizer\.model is not a sentencepiece model"):
        me.load_tokenizer(tmp_path)
