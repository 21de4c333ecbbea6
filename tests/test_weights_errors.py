"""Every bad input of the Foundation issue raises an error naming the file or value and what to do,
before any weight is read: a failing load_model never hands back a half-filled model.

Also: where load_model() looks without a path, the default dtype, and device parsing.
"""
from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mistral_edu as me
from conftest import randomize_, small_config
from mistral_edu.checkpoints import (SafetensorsFile, default_dtype, parse_device, write_hf,
                                     write_safetensors)
from mistral_edu.checkpoints.find import HF_REPO_FOLDER
from mistral_edu.dtypes import parse_dtype
from mistral_edu.tokenizer import mistral_common_v1_path

CFG = small_config()
MISTRAL_COMMON_DATA = mistral_common_v1_path().parent


@pytest.fixture
def consolidated(make_consolidated_checkpoint) -> Path:
    return make_consolidated_checkpoint(CFG)[1]


@pytest.fixture
def hf_sharded(tmp_path) -> Path:
    model = randomize_(me.Transformer(CFG), seed=0)
    write_hf(model.state_dict(), CFG, tmp_path / "hf", shards=3)
    return tmp_path / "hf"


@pytest.fixture
def reads(monkeypatch) -> list:
    """The names of the tensors read from disk during the test."""
    seen, read = [], SafetensorsFile.read

    def counting_read(self, name):
        seen.append(name)
        return read(self, name)

    monkeypatch.setattr(SafetensorsFile, "read", counting_read)
    return seen


def load(path, device="cpu", **kwargs):
    return me.load_model(path, device=device, verbose=False, **kwargs)


def rewrite_tensors(folder: Path, change) -> None:
    """Rewrite consolidated.safetensors with change(dict of tensors) applied."""
    path = folder / "consolidated.safetensors"
    stored = SafetensorsFile(path)  # plain reads, not a memory map that rewriting the file would pull away
    tensors = {name: stored.read(name) for name in stored.entries}
    change(tensors)
    write_safetensors(path, tensors)


def edit_params(folder: Path, **changes) -> None:
    params = json.loads((folder / "params.json").read_text())
    (folder / "params.json").write_text(json.dumps({**params, **changes}))


# ----------------------------------------------------------------------------- the folder

def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"weights folder .*nowhere does not exist"):
        load(tmp_path / "nowhere")


def test_a_file_instead_of_a_folder(consolidated):
    with pytest.raises(NotADirectoryError, match=r"consolidated\.safetensors is a file; pass the folder"):
        load(consolidated / "consolidated.safetensors")


def test_folder_with_neither_layout(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "params.json").write_text("{}")
    with pytest.raises(ValueError, match=r"neither a Mistral checkpoint .* nor a Hugging Face one.*notes\.txt"):
        load(tmp_path)


@pytest.mark.parametrize("files", [["consolidated.00.pth", "params.json"],
                                   ["pytorch_model-00001-of-00002.bin", "config.json"]])
def test_pickled_weights_only(tmp_path, files):
    for name in files:
        (tmp_path / name).write_bytes(b"\x80\x02}q\x00.")  # a pickle: must never be opened
    with pytest.raises(ValueError, match=rf"only pickled weights \({files[0]}\).*never unpickles.*safetensors"):
        load(tmp_path)


# ----------------------------------------------------------------------------- the files

def test_truncated_safetensors(consolidated, reads):
    path = consolidated / "consolidated.safetensors"
    os.truncate(path, path.stat().st_size - 10)
    with pytest.raises(ValueError, match=r"consolidated\.safetensors is truncated: tensor '.*' ends at byte "
                                         r"\d+ but the file has \d+ bytes; re-download it"):
        load(consolidated)
    assert reads == []


def test_safetensors_too_short_for_a_header(consolidated):
    os.truncate(consolidated / "consolidated.safetensors", 5)
    with pytest.raises(ValueError, match=r"consolidated\.safetensors is 5 bytes, too short"):
        load(consolidated)


@pytest.mark.parametrize("header, message", [
    (b"{not json", r"the header is not valid JSON"),
    (b"[1, 2, 3]", r"the header is JSON but not a name -> tensor table"),
    (b'{"output.weight": {"dtype": "F8_E9", "shape": [1], "data_offsets": [0, 1]}}',
     r"tensor 'output\.weight' has a malformed header entry"),
])
def test_corrupt_header(consolidated, header, message):
    path = consolidated / "consolidated.safetensors"
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    path.write_bytes(struct.pack("<Q", n) + header.ljust(n) + data[8 + n:])
    with pytest.raises(ValueError, match=r"consolidated\.safetensors: " + message):
        load(consolidated)


def test_header_length_larger_than_the_file(consolidated):
    path = consolidated / "consolidated.safetensors"
    path.write_bytes(struct.pack("<Q", 10**12) + path.read_bytes()[8:])
    with pytest.raises(ValueError, match=r"header length 1000000000000 does not fit in a \d+-byte file"):
        load(consolidated)


def test_missing_tensor(consolidated, reads):
    rewrite_tensors(consolidated, lambda t: t.pop("layers.1.feed_forward.w2.weight"))
    reads.clear()
    with pytest.raises(ValueError, match=r"missing tensors \['layers\.1\.feed_forward\.w2\.weight'\] \(1 in all\); "
                                         r"the download is incomplete"):
        load(consolidated)
    assert reads == []


def test_unexpected_tensor(consolidated, reads):
    rewrite_tensors(consolidated, lambda t: t.update({"layers.2.attention.wq.weight": torch.zeros(64, 64)}))
    reads.clear()
    with pytest.raises(ValueError, match=r"unexpected tensors \['consolidated\.safetensors:layers\.2\.attention"
                                         r"\.wq\.weight'\]; this is not a Mistral-architecture checkpoint"):
        load(consolidated)
    assert reads == []


def test_wrong_shape(consolidated, reads):
    rewrite_tensors(consolidated, lambda t: t.update({"layers.0.ffn_norm.weight": torch.ones(65)}))
    reads.clear()
    with pytest.raises(ValueError, match=r"tensor 'layers\.0\.ffn_norm\.weight' has shape \(65,\) but the config "
                                         r"\(params\.json\) implies \(64,\)"):
        load(consolidated)
    assert reads == []


def test_config_contradicting_the_tensors(consolidated, reads):
    edit_params(consolidated, hidden_dim=192)
    with pytest.raises(ValueError, match=r"feed_forward\.w1\.weight' has shape \(160, 64\) but the config "
                                         r"\(params\.json\) implies \(192, 64\); the config and the weights come "
                                         r"from different models"):
        load(consolidated)
    assert reads == []


def test_hf_config_contradicting_the_tensors(hf_sharded, reads):
    config = json.loads((hf_sharded / "config.json").read_text())
    (hf_sharded / "config.json").write_text(json.dumps({**config, "num_key_value_heads": 4}))
    with pytest.raises(ValueError, match=r"model-0000\d-of-00003\.safetensors: tensor 'model\.layers\.\d\.self_attn"
                                         r"\.[kv]_proj\.weight' has shape \(32, 64\) but the config \(config\.json\)"):
        load(hf_sharded)
    assert reads == []


def test_a_truncated_last_shard_fails_before_anything_is_read(hf_sharded, reads):
    last = hf_sharded / "model-00003-of-00003.safetensors"
    os.truncate(last, last.stat().st_size - 1)
    with pytest.raises(ValueError, match=r"model-00003-of-00003\.safetensors is truncated"):
        load(hf_sharded)
    assert reads == []


def test_a_shard_listed_in_the_index_is_missing(hf_sharded):
    (hf_sharded / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors\.index\.json lists \['model-00002-of-00003"
                                                r"\.safetensors'\], which are not in .*; finish the download"):
        load(hf_sharded)


def test_the_sharded_hf_layout_loads(hf_sharded):
    assert load(hf_sharded).checkpoint.layout == "hf"


def test_v03_config_beside_a_v1_tokenizer(tmp_path, make_consolidated_checkpoint, reads):
    """v0.3's vocabulary is 32768; the v1 tokenizer has 32000 pieces: they must not be paired."""
    _, folder = make_consolidated_checkpoint(small_config(vocab_size=32768), dtype=torch.bfloat16)
    (folder / "tokenizer.model").write_bytes(mistral_common_v1_path().read_bytes())
    with pytest.raises(ValueError, match=r"tokenizer\.model has 32000 pieces but the config says vocab_size 32768: "
                                         r"they come from different model versions"):
        load(folder)
    assert reads == []
    # the v3 tokenizer that mistral-common ships has the 32768 pieces: that pair loads
    (folder / "tokenizer.model").write_bytes((MISTRAL_COMMON_DATA / "mistral_instruct_tokenizer_240323.model.v3")
                                             .read_bytes())
    assert load(folder).cfg.vocab_size == 32768


# ----------------------------------------------------------------------------- what the model is given

@pytest.fixture(scope="module")
def tiny_model():
    return randomize_(me.Transformer(small_config(max_seq_len=32)), seed=0).eval()


@pytest.mark.parametrize("bad", [256, -1, 10**6])
def test_token_ids_outside_the_vocabulary(tiny_model, bad):
    with pytest.raises(ValueError, match=rf"token id {bad} is outside the vocabulary 0\.\.255"):
        tiny_model(torch.tensor([[1, 5, bad]]))
    with pytest.raises(ValueError, match=rf"token id {bad} is outside the vocabulary 0\.\.255"):
        me.generate(tiny_model, [1, bad], max_new_tokens=1)


def test_token_ids_outside_the_tokenizer(tokenizer):
    with pytest.raises(ValueError, match=r"token id 32000 is outside the vocabulary 0\.\.31999"):
        tokenizer.decode([1, 32000])
    with pytest.raises(ValueError, match=r"token id -3 is outside the vocabulary"):
        tokenizer.id_to_piece(-3)


def test_empty_prompt(tiny_model):
    with pytest.raises(ValueError, match=r"the prompt is empty: pass at least one token \(BOS = 1"):
        me.generate(tiny_model, [], max_new_tokens=3)
    with pytest.raises(ValueError, match=r"tokens is empty \(1, 0\): give at least one token"):
        tiny_model(torch.zeros(1, 0, dtype=torch.long))


def test_prompt_longer_than_the_context(tiny_model):
    with pytest.raises(ValueError, match=r"prompt \(33\) \+ max_new_tokens \(1\) = 34 exceeds the context of 32"):
        me.generate(tiny_model, [1] * 33, max_new_tokens=1)
    with pytest.raises(ValueError, match=r"prompt \(30\) \+ max_new_tokens \(5\) = 35 exceeds the context of 32"):
        me.generate(tiny_model, [1] * 30, max_new_tokens=5)
    with pytest.raises(ValueError, match=r"33 positions exceed the model's context of 32 tokens"):
        tiny_model(torch.ones(1, 33, dtype=torch.long))


def test_tokens_of_the_wrong_kind(tiny_model):
    with pytest.raises(TypeError, match=r"tokens must be an integer torch\.Tensor .* got list"):
        tiny_model([[1, 2]])
    with pytest.raises(TypeError, match=r"got torch\.float32"):
        tiny_model(torch.ones(1, 2))
    with pytest.raises(ValueError, match=r"tokens must have shape \(batch, seq\), got \(3,\)"):
        tiny_model(torch.ones(3, dtype=torch.long))


def test_non_alternating_chat(tokenizer):
    with pytest.raises(ValueError, match=r"message 1 has role 'user' where 'assistant' was expected: user and "
                                         r"assistant must alternate"):
        tokenizer.encode_chat([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])


# ----------------------------------------------------------------------------- dtype and device

@pytest.mark.parametrize("bad", ["fp8", "float64", 5])
def test_unknown_dtype(consolidated, bad):
    with pytest.raises(ValueError, match=rf"unknown dtype {bad!r}; use one of \[.*'bf16'.*\] or a torch dtype"):
        load(consolidated, dtype=bad)


def test_unsupported_torch_dtype(consolidated):
    with pytest.raises(ValueError, match=r"dtype torch\.int8 is not supported; use torch\.float32"):
        load(consolidated, dtype=torch.int8)


@pytest.mark.parametrize("name, expected", [("bf16", torch.bfloat16), ("BFloat16", torch.bfloat16),
                                            ("fp16", torch.float16), ("half", torch.float16),
                                            ("float32", torch.float32), (torch.bfloat16, torch.bfloat16),
                                            (None, None)])
def test_dtype_names(name, expected):
    assert parse_dtype(name) == expected


@pytest.mark.parametrize("bad, message", [("tpu", r"unknown device 'tpu'; use 'cpu', 'cuda' or 'cuda:N'"),
                                          ("CPU", r"unknown device 'CPU'"),
                                          ("meta", r"device meta is not supported; use 'cpu', 'cuda' or 'mps'")])
def test_unknown_device(consolidated, bad, message):
    with pytest.raises(ValueError, match=message):
        load(consolidated.parent / "never-reached", device=bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_cuda():
    with pytest.raises(ValueError, match=r"device cuda:1 requested but this PyTorch sees no CUDA GPU .*device='cpu'"):
        me.load_model(device="cuda:1")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_index_that_does_not_exist():
    with pytest.raises(ValueError, match=r"does not exist: \d+ GPU\(s\) visible"):
        parse_device(f"cuda:{torch.cuda.device_count()}")


def test_device_parsing():
    assert parse_device("cpu") == torch.device("cpu")
    assert parse_device(torch.device("cpu")) == torch.device("cpu")
    assert parse_device(None) == torch.device("cuda" if torch.cuda.is_available() else "cpu")


def test_default_dtype_when_loading(consolidated, no_weights_anywhere):
    assert load(consolidated).dtype == torch.float32, "a small checkpoint computes in float32"
    assert load(consolidated, dtype="bf16").dtype == torch.bfloat16
    assert me.load_model(verbose=False).dtype == torch.float32, "the embedded default computes in float32"


# ----------------------------------------------------------------------------- where load_model() looks

def fake_hf_cache(root: Path, checkpoint: Path, snapshot: str = "0" * 40, ref: bool = True) -> Path:
    """The hub cache's shape: blobs, a snapshot of symlinks to them, refs/main naming the snapshot."""
    repo = root / "hub" / HF_REPO_FOLDER
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snap = repo / "snapshots" / snapshot
    snap.mkdir(parents=True)
    for f in checkpoint.iterdir():
        blob = repo / "blobs" / f"{snapshot[:8]}-{f.name}"
        blob.write_bytes(f.read_bytes())
        (snap / f.name).symlink_to(os.path.relpath(blob, snap))
    if ref:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(snapshot)
    return snap


def test_env_var_wins_over_the_hf_cache(consolidated, hf_sharded, no_weights_anywhere, monkeypatch):
    fake_hf_cache(no_weights_anywhere / "hf_home", hf_sharded)
    monkeypatch.setenv("HF_HOME", str(no_weights_anywhere / "hf_home"))
    monkeypatch.setenv("MISTRAL_EDU_WEIGHTS", str(consolidated))
    found = me.find_checkpoint()
    assert (found.folder, found.layout, found.reason) == (consolidated, "mistral", "$MISTRAL_EDU_WEIGHTS")
    assert me.load_model(verbose=False).checkpoint == found


def test_a_bad_env_var_is_an_error_not_a_fallback(no_weights_anywhere, monkeypatch):
    monkeypatch.setenv("MISTRAL_EDU_WEIGHTS", str(no_weights_anywhere / "typo"))
    with pytest.raises(FileNotFoundError, match=r"typo does not exist; check the path or \$MISTRAL_EDU_WEIGHTS"):
        me.load_model()


def test_the_hf_cache_is_found(hf_sharded, no_weights_anywhere, monkeypatch):
    snap = fake_hf_cache(no_weights_anywhere / "hf_home", hf_sharded)
    monkeypatch.setenv("HF_HOME", str(no_weights_anywhere / "hf_home"))
    model = me.load_model(verbose=False)
    assert (model.checkpoint.folder, model.checkpoint.reason) == (snap, "the Hugging Face cache")
    assert model.cfg == CFG


def test_the_hf_cache_prefers_refs_main_and_skips_incomplete_snapshots(hf_sharded, no_weights_anywhere,
                                                                      monkeypatch):
    root = no_weights_anywhere / "hf_home"
    newest = fake_hf_cache(root, hf_sharded, snapshot="b" * 40)
    fake_hf_cache(root, hf_sharded, snapshot="a" * 40, ref=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(root / "hub"))
    assert me.find_checkpoint().folder == newest
    for f in newest.iterdir():
        if f.suffix == ".safetensors":
            f.unlink()
    assert me.find_checkpoint().folder.name == "a" * 40


def test_the_default_cache_location_under_home(hf_sharded, no_weights_anywhere):
    snap = fake_hf_cache(no_weights_anywhere / "home" / ".cache" / "huggingface", hf_sharded)
    assert me.find_checkpoint().folder == snap


def test_xdg_cache_home_is_honoured_as_huggingface_hub_does(hf_sharded, no_weights_anywhere, monkeypatch):
    snap = fake_hf_cache(no_weights_anywhere / "xdg" / "huggingface", hf_sharded)
    monkeypatch.setenv("XDG_CACHE_HOME", str(no_weights_anywhere / "xdg"))
    assert me.find_checkpoint().folder == snap


def test_nothing_found_gives_the_embedded_default(no_weights_anywhere, capsys):
    model = me.load_model()
    assert "embedded default" in capsys.readouterr().out
    assert model.checkpoint.is_embedded_default and model.checkpoint.reason == "no real weights found"
    assert model.cfg == me.ModelConfig.tiny()
    again = me.load_model(verbose=False)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in model.state_dict().items()), "deterministic"
    assert not any(p.requires_grad for p in model.parameters()) and not model.training


# ----------------------------------------------------------------------------- the CLI says what it found

def run_cli(*args, env=None) -> str:
    result = subprocess.run([sys.executable, "-m", "mistral_edu", *args], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_cli_info(consolidated, no_weights_anywhere):
    env = {**os.environ, "MISTRAL_EDU_WEIGHTS": str(consolidated)}
    out = run_cli("info", env=env)
    assert str(consolidated) in out and "$MISTRAL_EDU_WEIGHTS" in out and "mistral layout" in out
    assert "tokenizer.model.v1 (32000 pieces; mistral-common's v1, sha256 checked" in out
    (consolidated / "tokenizer.model").write_bytes(mistral_common_v1_path().read_bytes())
    assert f"{consolidated / 'tokenizer.model'} (32000 pieces; the tokenizer.model beside the weights)" in \
        run_cli("info", env=env)
    assert f"torch {torch.__version__}" in out and "device" in out
    assert re.search(r"Mistral-7B-Instruct-v0.2 in bf16 .* needs \d+\.\d GB; .*: (fits|does NOT fit)", out)
