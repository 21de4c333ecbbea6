"""fuse_projections: wq|wk|wv and w1|w3 become rows of one matrix each, and nothing else changes."""
from __future__ import annotations

import pytest
import torch

import mistral_edu as me
from mistral_edu.generation import fuse_projections
from mistral_edu.generation.fusion import fused_weight, is_fused
from mistral_edu.model import projection_groups

from conftest import randomize_, small_config


@pytest.fixture
def model():
    return randomize_(me.Transformer(small_config()), seed=2).eval()


def pointers(model) -> list[int]:
    return [p.data_ptr() for p in model.parameters()]


def test_fusing_keeps_parameters_names_values_and_logits(model):
    ids = torch.tensor([[1, 17, 42, 7, 99]])
    parameters, state = list(model.parameters()), {k: v.clone() for k, v in model.state_dict().items()}
    before = model(ids)
    assert not any(is_fused(group) for group in projection_groups(model.layers[0]))
    assert fuse_projections(model) is model
    assert list(model.parameters()) == parameters, "the Parameter objects must stay (optimisers hold them)"
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert torch.equal(model(ids), before)
    copy = me.Transformer(model.cfg)
    copy.load_state_dict(model.state_dict())
    assert torch.equal(copy(ids), before)


def test_fused_weights_are_the_modules_own_storage(model):
    fuse_projections(model)
    attn, ffn = model.layers[1].attention, model.layers[1].feed_forward
    wqkv, w13 = fused_weight([attn.wq, attn.wk, attn.wv]), fused_weight([ffn.w1, ffn.w3])
    assert wqkv.shape == (attn.wq.out_features + 2 * attn.wk.out_features, attn.wq.in_features)
    assert wqkv.data_ptr() == attn.wq.weight.data_ptr()
    assert wqkv[-attn.wv.weight.shape[0]:].data_ptr() == attn.wv.weight.data_ptr()
    assert w13[ffn.w1.weight.shape[0]:].data_ptr() == ffn.w3.weight.data_ptr()
    with torch.no_grad():
        attn.wk.weight.mul_(2)                          # an edit of the module is an edit of the fused matrix
    assert torch.equal(wqkv[attn.wq.out_features:-attn.wv.out_features], attn.wk.weight)


def test_fusing_is_idempotent_and_restored_after_a_weight_is_replaced(model):
    fuse_projections(model)
    fused = pointers(model)
    assert pointers(fuse_projections(model)) == fused
    ffn = model.layers[0].feed_forward
    ffn.w3.weight = torch.nn.Parameter(ffn.w3.weight.detach().clone())
    assert not is_fused([ffn.w1, ffn.w3])
    with pytest.raises(ValueError, match=r"call mistral_edu.generation.fuse_projections\(model\) first"):
        fused_weight([ffn.w1, ffn.w3])
    fuse_projections(model)
    assert is_fused([ffn.w1, ffn.w3])


def test_only_the_fast_path_fuses(model):
    unfused = pointers(model)
    me.generate(model, [1, 5, 9], 4, fast=False)
    with model.hooks([("layers.0.hook_resid_post", lambda x, hook: None)]):
        me.generate(model, [1, 5, 9], 4)
    assert pointers(model) == unfused
    me.generate(model, [1, 5, 9], 4)
    assert all(is_fused(group) for block in model.layers for group in projection_groups(block))


def test_weights_not_in_memory_cannot_be_fused():
    with torch.device("meta"):
        skeleton = me.Transformer(small_config())
    with pytest.raises(ValueError, match="streamed models cannot be fused"):
        fuse_projections(skeleton)
