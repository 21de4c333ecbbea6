"""Lesson 13's arithmetic and measuring tools: the bytes a decode step reads (predicted from a config, equal to
the bytes of the tensors), arithmetic intensity, the KV crossover, and the timers. Nothing here asserts a time:
the timers are checked with a scripted clock, the steps only for running and returning a positive number."""
import math
import re

import pytest
import torch

import mistral_edu as me
from mistral_edu import exercises, generation, memory
from mistral_edu.exercises import EXERCISES
from mistral_edu.generation import speed
from mistral_edu.default import heldout_sample
from mistral_edu.model import random_init_

REAL = me.ModelConfig.mistral_7b_instruct_v02()
SMALL = me.ModelConfig(dim=64, n_layers=2, head_dim=16, hidden_dim=224, n_heads=4, n_kv_heads=1, norm_eps=1e-5,
                       vocab_size=32000, rope_theta=1e6, max_seq_len=4096)


@pytest.fixture(scope="module")
def default():
    return me.load_model(verbose=False)


# ------------------------------------------------------------------ bytes per step

def test_the_7b_reads_its_weights_but_the_embedding_table_once_per_step():
    parts = memory.decode_bytes_per_step(REAL, "bf16")
    assert parts == {"weights": 14_483_464_192 - 32000 * 4096 * 2 + 4096 * 2, "KV cache": 0}
    assert memory.decode_bytes_per_step(REAL, "bf16", context=32768)["KV cache"] == 4 * 2**30
    batch8 = memory.decode_bytes_per_step(REAL, "bf16", context=100, batch=8)
    assert batch8["weights"] == parts["weights"] + 7 * 4096 * 2          # one embedding row per sequence
    assert batch8["KV cache"] == 8 * 100 * 128 * 1024


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_prediction_equals_the_bytes_of_the_tensors(default, dtype):
    model = random_init_(me.Transformer(SMALL), seed=0).to(dtype)
    assert generation.model_bytes_read_per_step(model) == memory.decode_bytes_per_step(SMALL, dtype)["weights"]
    assert generation.model_bytes_read_per_step(default) == memory.decode_bytes_per_step(default.cfg, default.dtype)["weights"]


def test_fusing_the_projections_does_not_count_the_weights_twice():
    model = random_init_(me.Transformer(SMALL), seed=0)
    before = generation.model_bytes_read_per_step(model)
    generation.fuse_projections(model)
    assert generation.model_bytes_read_per_step(model) == before


def test_int8_halves_the_block_matrices():
    bf16, int8 = (memory.decode_bytes_per_step(REAL, fmt)["weights"] for fmt in ("bf16", "int8"))
    assert 0.5 < int8 / bf16 < 0.52


def test_the_crossover_is_where_the_cache_equals_the_weights():
    for batch in (1, 8, 32):
        context = memory.kv_crossover_context(REAL, "bf16", batch)
        parts = memory.decode_bytes_per_step(REAL, "bf16", batch=batch)
        assert math.isclose(context * batch * memory.kv_bytes_per_token(REAL), parts["weights"])
    assert memory.kv_crossover_context(REAL, "bf16", 1) > REAL.max_seq_len        # batch 1: never within 32k


@pytest.mark.parametrize("kwargs, words", [({"batch": 0}, "batch must be positive"),
                                           ({"context": -1}, "context (tokens already in the cache)")])
def test_bad_arguments_are_named(kwargs, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        memory.decode_bytes_per_step(REAL, "bf16", **kwargs)


# ------------------------------------------------------------------ the roofline

def test_matmul_intensity_at_batch_1_and_64():
    assert memory.matmul_intensity(1, 4096, 4096, 2) == pytest.approx(1.0, rel=1e-3)
    assert memory.matmul_intensity(64, 4096, 4096, 2) == pytest.approx(2 * 64 * 4096**2 / (2 * (4096**2 + 128 * 4096)))
    assert memory.matmul_intensity(1, 4096, 4096, 4) == pytest.approx(0.5, rel=1e-3)
    with pytest.raises(ValueError, match="must be positive"):
        memory.matmul_intensity(0, 4096, 4096)


def test_the_roofline_is_the_lower_of_the_two_limits():
    rates = memory.attainable_flop_rate([0.5, 10, 1000], peak_flop_rate=100.0, bandwidth=10.0)
    assert rates.tolist() == [5.0, 100.0, 100.0]


# ------------------------------------------------------------------ the timers (scripted clock, no timing asserted)

def test_best_seconds_is_the_fastest_timed_run_after_the_warm_up(monkeypatch):
    ticks = iter([0.0, 3.0, 10.0, 11.0, 20.0, 22.0])      # runs of 3, 1 and 2 seconds
    monkeypatch.setattr(speed.time, "perf_counter", lambda: next(ticks))
    calls = []
    assert generation.best_seconds(lambda: calls.append(1), repeats=3) == 1.0
    assert len(calls) == 4                                  # one warm-up, three timed
    with pytest.raises(ValueError, match="repeats must be positive"):
        generation.best_seconds(lambda: None, repeats=0)


def test_the_step_timers_run_both_paths():
    model = random_init_(me.Transformer(SMALL), seed=0).eval().requires_grad_(False)
    for seconds in (generation.plain_step_seconds(model, batch=2, context=8, repeats=1),
                    generation.fast_step_seconds(model, context=8, repeats=1),
                    generation.copy_bandwidth(megabytes=4, repeats=1),
                    generation.matmul_flop_rate(size=64, repeats=1)):
        assert seconds > 0 and math.isfinite(seconds)


def test_the_filled_cache_holds_the_context():
    model = random_init_(me.Transformer(SMALL), seed=0)
    cache = speed._filled_cache(model, batch=2, context=10, extra=3)
    assert cache.pos == 10 and cache.capacity == 13 and cache.k[:, :, :10].abs().sum() > 0


# ------------------------------------------------------------------ the exercises' machinery

FUNCTION_CHECKERS = {"decode_tokens_per_second": exercises.check_decode_tokens_per_second,
                     "matmul_intensity": exercises.check_matmul_intensity}


@pytest.mark.parametrize("name", sorted(FUNCTION_CHECKERS))
def test_the_revealed_solution_passes_and_a_stub_prints_only_the_task(capsys, name):
    namespace = {}
    exec(EXERCISES[name].solution, namespace)
    assert FUNCTION_CHECKERS[name](namespace[name])
    assert capsys.readouterr().out.startswith("correct")
    assert not FUNCTION_CHECKERS[name](lambda *a: None)
    out = capsys.readouterr().out
    assert out.startswith(f"not solved yet: {EXERCISES[name].header()}") and EXERCISES[name].solution not in out

    def crashes(*args):
        raise RuntimeError("boom")
    assert not FUNCTION_CHECKERS[name](crashes)
    assert "raised RuntimeError: boom" in capsys.readouterr().out


def test_the_revealed_crossover_passes(capsys):
    namespace = {"real": REAL, "decode_bytes_per_step": memory.decode_bytes_per_step,
                 "kv_bytes_per_token": memory.kv_bytes_per_token}
    exec(EXERCISES["crossover_context"].solution, namespace)
    assert exercises.check_crossover_context(namespace["crossover_context"])
    assert capsys.readouterr().out.startswith("correct")
    assert not exercises.check_crossover_context(None)
    assert EXERCISES["crossover_context"].task in capsys.readouterr().out


def test_an_int8_model_reads_fewer_bytes_and_keeps_its_top_1(default):
    """What the lesson's int8 section prints, on the default: fewer bytes a step, nearly the same predictions."""
    int8 = me.load_model(strategy="int8", verbose=False)
    assert generation.model_bytes_read_per_step(int8) < generation.model_bytes_read_per_step(default)
    text = torch.tensor([me.load_tokenizer().encode(heldout_sample()[0], bos=True)[:128]])   # (1, seq)
    with torch.no_grad():
        agree = (default(text).argmax(-1) == int8(text).argmax(-1)).float().mean()
    assert agree > 0.9


def test_interleaved_runs_take_turns_and_keep_every_run(monkeypatch):
    ticks = iter([0.0, 1.0, 1.0, 3.0, 3.0, 6.0, 6.0, 10.0])   # a: 1 then 3 s; b: 2 then 4 s
    monkeypatch.setattr(speed.time, "perf_counter", lambda: next(ticks))
    order = []
    times = generation.interleaved_seconds({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeats=2)
    assert times == {"a": [1.0, 3.0], "b": [2.0, 4.0]}
    assert order == ["a", "b", "a", "b", "a", "b"]                # one warm-up each, then turns


def test_the_cpu_clock_is_the_threads_own_and_needs_one_thread_on_a_cpu(monkeypatch):
    ticks = iter([0.0, 0.5, 0.5, 2.0])                         # the thread's CPU clock: 0.5 then 1.5 s
    monkeypatch.setattr(speed.time, "thread_time", lambda: next(ticks))
    monkeypatch.setattr(speed.time, "perf_counter", lambda: pytest.fail("clock='cpu' read the wall clock"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert generation.interleaved_seconds({"a": lambda: None}, repeats=2, clock="cpu") == {"a": [0.5, 1.5]}
        torch.set_num_threads(2)
        with pytest.raises(ValueError, match="set_num_threads"):
            generation.interleaved_seconds({"a": lambda: None}, clock="cpu")
    finally:
        torch.set_num_threads(threads)
    with pytest.raises(ValueError, match="wall"):
        generation.interleaved_seconds({"a": lambda: None}, clock="thread")


def test_the_spread_is_the_interquartile_range_over_the_median():
    assert generation.relative_spread([1.0, 1.0, 1.0]) == 0
    assert generation.relative_spread([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx((4 - 2) / 3)


def test_split_half_spread_compares_the_fastest_run_of_each_half():
    assert generation.split_half_spread([5.0, 1.0, 9.0, 9.0, 1.0, 7.0]) == 0        # both halves found a quiet run
    assert generation.split_half_spread([1.0, 3.0, 2.0, 2.5]) == pytest.approx(1.0)  # the second half never ran at 1
    with pytest.raises(ValueError, match="at least 2 runs"):
        generation.split_half_spread([1.0])
