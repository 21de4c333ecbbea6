"""The overflow watch names the first residual-stream point that is not finite, and changes nothing else."""
from __future__ import annotations

import dataclasses

import pytest
import torch

import mistral_edu as me
from mistral_edu.analysis import check_finite, residual_points, watch_nonfinite
from mistral_edu.hooks import hook_points

from conftest import randomize_

CFG = dataclasses.replace(me.ModelConfig.tiny(), vocab_size=512)

pytestmark = pytest.mark.usefixtures("one_thread")


def fresh_model(dtype=torch.float32) -> me.Transformer:
    return randomize_(me.Transformer(CFG), seed=3).to(dtype).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(3, CFG.vocab_size, (1, 12), generator=torch.Generator().manual_seed(1))


def inject_inf(x, hook):
    x = x.clone()
    x[0, 5, 7] = float("inf")
    return x


def test_the_residual_points_follow_the_forward_order():
    names = residual_points(fresh_model())
    assert names[:3] == ["hook_embed", "layers.0.hook_resid_mid", "layers.0.hook_resid_post"]
    assert len(names) == 1 + 2 * CFG.n_layers


@pytest.mark.parametrize("layer", range(CFG.n_layers))
def test_an_inf_from_a_feed_forward_is_named_by_its_layer(tokens, layer):
    model = fresh_model()
    with model.hooks([(f"layers.{layer}.hook_mlp_out", inject_inf)]), watch_nonfinite(model) as watch:
        model(tokens)
    assert watch.first == f"layers.{layer}.hook_resid_post" and watch.layer == layer
    assert f"layer {layer}'s feed-forward" in watch.report()


def test_an_inf_from_attention_is_named_as_attention(tokens):
    model = fresh_model()
    with model.hooks([("layers.1.hook_attn_out", inject_inf)]), pytest.raises(FloatingPointError) as err:
        check_finite(model, tokens)
    assert "layers.1.hook_resid_mid (written by layer 1's attention)" in str(err.value)
    assert "bfloat16 or float32" in str(err.value)


def test_an_inf_in_the_embedding_is_named(tokens):
    model = fresh_model()
    with model.hooks([("hook_embed", inject_inf)]), watch_nonfinite(model) as watch:
        model(tokens)
    assert watch.first == "hook_embed" and watch.layer is None
    assert "written by the embedding" in watch.report()


def test_a_real_fp16_overflow_is_found_where_fp32_stays_finite(tokens):
    """A feed-forward whose output reaches ~1e6 overflows fp16 (largest finite 65,504) but not fp32."""
    models = {dtype: fresh_model(dtype) for dtype in (torch.float32, torch.float16)}
    for model in models.values():
        model.layers[1].feed_forward.w2.weight.mul_(1e5)
    watch = check_finite(models[torch.float32], tokens)
    assert "stayed finite in torch.float32" in watch.report()
    with pytest.raises(FloatingPointError, match=r"layers\.1\.hook_resid_post .*layer 1's feed-forward.*65,504"):
        check_finite(models[torch.float16], tokens)


def test_watching_changes_no_logit_and_leaves_the_hook_points_idle(tokens):
    model = fresh_model()
    plain = model(tokens)
    with watch_nonfinite(model) as watch:
        watched = model(tokens)
    assert torch.equal(plain, watched) and watch.first is None
    assert set(watch.finite) == set(residual_points(model))
    assert not any(point.active for point in hook_points(model).values())


def test_a_report_before_any_forward_pass_says_what_to_do():
    with watch_nonfinite(fresh_model()) as watch:
        pass
    with pytest.raises(RuntimeError, match="run a forward pass inside"):
        watch.report()
