"""ModelConfig: the published numbers, both file formats, and rejection of impossible shapes."""
from __future__ import annotations

import dataclasses
import json

import pytest

import mistral_edu as me
from mistral_edu.memory import parameter_count

# config.json of mistralai/Mistral-7B-Instruct-v0.2 on the Hugging Face hub, as published.
HF_V02 = {
    "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 32768,
    "model_type": "mistral", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "sliding_window": None, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "transformers_version": "4.36.0", "use_cache": True, "vocab_size": 32000,
}
# params.json of the same model in Mistral's consolidated layout.
PARAMS_V02 = {"dim": 4096, "n_layers": 32, "head_dim": 128, "hidden_dim": 14336, "n_heads": 32, "n_kv_heads": 8,
              "norm_eps": 1e-05, "vocab_size": 32000, "rope_theta": 1000000.0}
# params.json of Mistral-7B-v0.1: no rope_theta (the reference's default, 1e4), a 4096-token window.
PARAMS_V01 = {"dim": 4096, "n_layers": 32, "head_dim": 128, "hidden_dim": 14336, "n_heads": 32, "n_kv_heads": 8,
              "norm_eps": 1e-05, "sliding_window": 4096, "vocab_size": 32000}


def write(tmp_path, name, data) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def test_v02_preset_is_the_published_model():
    cfg = me.ModelConfig.mistral_7b_instruct_v02()
    assert (cfg.dim, cfg.n_layers, cfg.head_dim, cfg.hidden_dim, cfg.n_heads, cfg.n_kv_heads) == \
        (4096, 32, 128, 14336, 32, 8)
    assert (cfg.norm_eps, cfg.vocab_size, cfg.rope_theta, cfg.sliding_window, cfg.max_seq_len) == \
        (1e-5, 32000, 1e6, None, 32768)
    assert cfg.n_rep == 4
    assert parameter_count(cfg) == 7_241_732_096
    assert 2 * parameter_count(cfg) == 14_483_464_192, "the bf16 checkpoint's total_size"


def test_v01_preset():
    cfg = me.ModelConfig.mistral_7b_v01()
    assert (cfg.rope_theta, cfg.sliding_window) == (10000.0, 4096)
    assert dataclasses.replace(cfg, rope_theta=1e6, sliding_window=None) == me.ModelConfig.mistral_7b_instruct_v02()


def test_tiny_has_the_7b_ratios():
    tiny, big = me.ModelConfig.tiny(), me.ModelConfig.mistral_7b_instruct_v02()
    assert tiny.n_rep == big.n_rep == 4
    assert tiny.hidden_dim / tiny.dim == big.hidden_dim / big.dim == 3.5
    assert tiny.n_heads * tiny.head_dim == tiny.dim
    assert (tiny.vocab_size, tiny.rope_theta, tiny.norm_eps, tiny.sliding_window) == (32000, 1e6, 1e-5, None)


def test_published_files_read_as_the_preset(tmp_path):
    v02 = me.ModelConfig.mistral_7b_instruct_v02()
    assert me.ModelConfig.from_hf_config(write(tmp_path, "config.json", HF_V02)) == v02
    assert me.ModelConfig.from_params_json(write(tmp_path, "params.json", PARAMS_V02)) == v02
    v01 = me.ModelConfig.from_params_json(write(tmp_path, "v01.json", PARAMS_V01))
    assert v01 == dataclasses.replace(me.ModelConfig.mistral_7b_v01(), max_seq_len=32768)


def test_transformers_5_rope_parameters(tmp_path):
    """transformers >= 5 writes rope_parameters.rope_theta instead of a top-level rope_theta."""
    raw = {k: v for k, v in HF_V02.items() if k != "rope_theta"}
    raw["rope_parameters"] = {"rope_theta": 1000000.0, "rope_type": "default"}
    assert me.ModelConfig.from_hf_config(write(tmp_path, "config.json", raw)).rope_theta == 1e6


def test_hf_config_without_rope_theta_is_refused(tmp_path):
    raw = {k: v for k, v in HF_V02.items() if k != "rope_theta"}
    with pytest.raises(ValueError, match=r"config\.json: config\.json gives no rope_theta"):
        me.ModelConfig.from_hf_config(write(tmp_path, "config.json", raw))


def test_rope_scaling_is_refused(tmp_path):
    raw = {**HF_V02, "rope_scaling": {"type": "linear", "factor": 2.0}}
    with pytest.raises(ValueError, match=r"RoPE scaling .*linear.* is not supported"):
        me.ModelConfig.from_hf_config(write(tmp_path, "config.json", raw))


@pytest.mark.parametrize("cfg", [me.ModelConfig.tiny(), me.ModelConfig.mistral_7b_v01(),
                                 me.ModelConfig(dim=96, head_dim=32, n_heads=4, n_kv_heads=2, hidden_dim=200,
                                                n_layers=3, vocab_size=300, norm_eps=1e-6, rope_theta=5e5,
                                                max_seq_len=1000)])
def test_both_formats_round_trip(cfg, tmp_path):
    assert me.ModelConfig.from_params_json(write(tmp_path, "params.json", cfg.to_params_json())) == cfg
    assert me.ModelConfig.from_hf_config(write(tmp_path, "config.json", cfg.to_hf_config())) == cfg


def test_params_json_omits_an_absent_window():
    assert "sliding_window" not in me.ModelConfig.tiny().to_params_json()
    assert me.ModelConfig.mistral_7b_v01().to_params_json()["sliding_window"] == 4096


def test_hf_config_matches_transformers_field_names():
    from transformers import MistralConfig
    hf = MistralConfig(**me.ModelConfig.mistral_7b_instruct_v02().to_hf_config())
    assert (hf.hidden_size, hf.intermediate_size, hf.num_key_value_heads, hf.head_dim, hf.rms_norm_eps) == \
        (4096, 14336, 8, 128, 1e-5)
    assert hf.sliding_window is None and hf.tie_word_embeddings is False


@pytest.mark.parametrize("changes, message", [
    ({"n_kv_heads": 3}, r"n_heads \(32\) must be a multiple of n_kv_heads \(3\)"),
    ({"head_dim": 127}, r"head_dim must be even for RoPE"),
    ({"dim": 0}, r"ModelConfig\.dim must be a positive integer, got 0"),
    ({"n_layers": 2.0}, r"ModelConfig\.n_layers must be a positive integer, got 2\.0"),
    ({"vocab_size": True}, r"ModelConfig\.vocab_size must be a positive integer, got True"),
    ({"norm_eps": 0.0}, r"norm_eps and rope_theta must be positive"),
    ({"rope_theta": -1.0}, r"norm_eps and rope_theta must be positive"),
    ({"sliding_window": 0}, r"sliding_window must be None or a positive integer, got 0"),
])
def test_impossible_shapes_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(me.ModelConfig.mistral_7b_instruct_v02(), **changes)


def test_config_files_with_missing_fields(tmp_path):
    with pytest.raises(ValueError, match=r"params\.json lacks \['hidden_dim'\]"):
        me.ModelConfig.from_params_json(write(tmp_path, "params.json",
                                              {k: v for k, v in PARAMS_V02.items() if k != "hidden_dim"}))
    with pytest.raises(ValueError, match=r"config\.json lacks \['num_key_value_heads'\]"):
        me.ModelConfig.from_hf_config(write(tmp_path, "config.json",
                                            {k: v for k, v in HF_V02.items() if k != "num_key_value_heads"}))


def test_tied_embeddings_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"tie_word_embeddings is true, but Mistral's output head is untied"):
        me.ModelConfig.from_hf_config(write(tmp_path, "config.json", {**HF_V02, "tie_word_embeddings": True}))


def test_unreadable_config_files(tmp_path):
    (tmp_path / "params.json").write_text("{'dim': 4096")
    with pytest.raises(ValueError, match=r"params\.json is not valid JSON .*; re-download it"):
        me.ModelConfig.from_params_json(tmp_path / "params.json")
    with pytest.raises(FileNotFoundError, match=r"config\.json does not exist"):
        me.ModelConfig.from_hf_config(tmp_path / "config.json")
