"""The exercise machinery: one Verdict, tiered help (task, hints, reveal), solutions that pass, stubs that
never raise or print a solution."""
import math
import re

import pytest
import torch
import torch.nn.functional as F

import mistral_edu as me
from mistral_edu import exercises
from mistral_edu.exercises import EXERCISES, Verdict, assert_close, catalogue
from mistral_edu.exercises.verdict import compare_tensors
from mistral_edu.memory import parameter_count

FUNCTION_CHECKERS = {
    "rms_norm": exercises.check_rms_norm, "rope": exercises.check_rope, "wavelength": exercises.check_wavelength,
    "grouped_attention": exercises.check_grouped_attention, "repeat_kv": exercises.check_repeat_kv,
    "decode_step": exercises.check_decode_step, "rolling_slot": exercises.check_rolling_slot,
    "top_p": exercises.check_top_p, "sampler": exercises.check_sampler,
    "kv_bytes_per_token": exercises.check_kv_bytes_per_token, "kv_cache_bytes": exercises.check_kv_cache_bytes,
    "weight_bytes": exercises.check_weight_bytes, "block_parameters": exercises.check_block_parameters,
    "transformer_block": exercises.check_transformer_block,
    "previous_token_scores": exercises.check_previous_token_scores, "head_entropy": exercises.check_head_entropy,
    "induction_scores": exercises.check_induction_scores, "patching": exercises.check_patching,
    "bytes_to_text": exercises.check_bytes_to_text, "k_composition": exercises.check_k_composition,
    "ablate_head": exercises.check_ablate_head, "head_position_patching": exercises.check_head_position_patching,
    "ov_copying": exercises.check_ov_copying, "probe_with_control": exercises.check_probe_with_control,
    "steered_generate": exercises.check_steered_generate,
    "decode_tokens_per_second": exercises.check_decode_tokens_per_second,
    "matmul_intensity": exercises.check_matmul_intensity, "balanced_accuracy": exercises.check_balanced_accuracy,
    "mean_difference": exercises.check_mean_difference,
}


@pytest.fixture(scope="module")
def tok():
    return me.load_tokenizer()


@pytest.fixture(autouse=True)
def fresh_hints(monkeypatch):
    monkeypatch.setattr(catalogue, "_hints_given", {})


def solution(name, **names):
    """The function that reveal(name) prints, defined by running its code."""
    from mistral_edu.analysis import balanced_accuracy
    given = {"torch": torch, "math": math, "me": me, "balanced_accuracy": balanced_accuracy, **names}
    namespace = dict(given)
    exec(EXERCISES[name].solution, namespace)
    return namespace[re.match(r"def (\w+)", EXERCISES[name].solution).group(1)]


# ------------------------------------------------------------------ the verdict

def test_verdict_shows_nothing_in_a_notebook_but_is_truthy():
    assert Verdict(True) and not Verdict(False)
    assert Verdict(True)._ipython_display_() is None


def test_assert_close_prints_or_raises(capsys):
    assert_close("same", torch.ones(3), torch.ones(3))
    assert "same: equal, max |diff| = " in capsys.readouterr().out
    with pytest.raises(AssertionError, match="differ"):
        assert_close("bug", torch.ones(3), torch.zeros(3))


def test_compare_tensors_names_nan_instead_of_a_nan_difference():
    assert "NaN" in compare_tensors(torch.tensor([float("nan"), 1.0]), torch.ones(2))


def test_every_exercise_shows_a_difficulty_and_a_time():
    for exercise in EXERCISES.values():
        header = exercise.header()
        assert header.count("★") == exercise.difficulty and header.count("★") + header.count("☆") == 3
        assert f"about {exercise.minutes} min" in header and len(exercise.hints) >= 2


def test_register_refuses_a_duplicate_name():
    with pytest.raises(ValueError, match="unique"):
        catalogue.register(EXERCISES["rms_norm"])


# ------------------------------------------------------------------ tiered help

@pytest.mark.parametrize("name", sorted(FUNCTION_CHECKERS))
def test_a_stub_prints_the_task_never_the_solution(capsys, name):
    ok = FUNCTION_CHECKERS[name](lambda *a: None)
    out = capsys.readouterr().out
    exercise = EXERCISES[name]
    assert isinstance(ok, Verdict) and not ok
    assert out.startswith(f"not solved yet: {exercise.header()}: {exercise.task}"), out
    assert f"hint('{name}')" in out
    assert exercise.hints[-1] not in out and exercise.solution not in out
    assert "repeat_interleave" not in out


@pytest.mark.parametrize("name", sorted(FUNCTION_CHECKERS))
def test_none_and_a_crash_are_reported_not_raised(capsys, name):
    assert not FUNCTION_CHECKERS[name](None)
    assert "not solved yet" in capsys.readouterr().out

    def crashes(*args):
        raise RuntimeError("boom")
    assert not FUNCTION_CHECKERS[name](crashes)
    assert "raised RuntimeError: boom" in capsys.readouterr().out

    def unwritten(*args):
        raise NotImplementedError
    assert not FUNCTION_CHECKERS[name](unwritten)
    assert EXERCISES[name].task in capsys.readouterr().out


def test_the_checkers_own_failure_is_never_blamed_on_the_learner(capsys, monkeypatch):
    from mistral_edu.exercises import attention

    def broken(*args, **kwargs):
        raise RuntimeError("reference broke")
    monkeypatch.setattr(attention, "_causal", broken)
    assert not exercises.check_grouped_attention(lambda q, k, v: q)
    out = capsys.readouterr().out
    assert "the checker itself failed (RuntimeError: reference broke)" in out and "your code raised" not in out


@pytest.mark.parametrize("name", sorted(FUNCTION_CHECKERS))
def test_an_answer_of_the_wrong_kind_says_what_to_return(capsys, name):
    assert not FUNCTION_CHECKERS[name](lambda *args: {"not": "an answer"})
    out = capsys.readouterr().out
    assert "return" in out and "got dict" in out and "your code raised" not in out, out


def test_hint_gives_the_concept_then_the_next_step_then_points_to_reveal(capsys):
    exercises.hint("repeat_kv")
    first = capsys.readouterr().out
    assert first.startswith("hint 1 of 2 for repeat_kv: ") and EXERCISES["repeat_kv"].hints[0] in first
    assert "repeat_interleave" not in first
    exercises.hint("repeat_kv")
    second = capsys.readouterr().out
    assert second.startswith("hint 2 of 2") and "reveal('repeat_kv')" in second
    exercises.hint("repeat_kv")
    assert "no more hints" in capsys.readouterr().out
    exercises.reveal("repeat_kv")
    assert "x.repeat_interleave(n_rep, dim=2)" in capsys.readouterr().out


def _code_lines(solution):
    """reveal's code lines, comments dropped and whitespace removed (short lines like `return x` are not code to copy)."""
    lines = (line.split("#", 1)[0] for line in solution.splitlines())
    return [squeezed for squeezed in ("".join(line.split()) for line in lines) if len(squeezed) >= 8]


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_no_hint_reproduces_a_line_of_the_solution(name):
    exercise = EXERCISES[name]
    for hint in exercise.hints:
        squeezed = "".join(hint.split())
        for line in _code_lines(exercise.solution):
            assert line not in squeezed, (name, line)


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_hints_are_words_not_code(name):
    """Tier 1 is the concept, tier 2 the next step in words: code comes only from reveal."""
    for hint in EXERCISES[name].hints:
        for marker in ("torch.", " @ ", "**", ".T ", "[:", " = ", "()", "//", "lambda", "keepdim"):
            assert marker not in hint, (name, marker, hint)


def test_hint_of_an_unknown_name_lists_the_names():
    with pytest.raises(KeyError, match="rms_norm"):
        exercises.hint("rmsnorm")


@pytest.mark.parametrize("name", sorted(FUNCTION_CHECKERS))
def test_the_revealed_solution_passes_its_checker(capsys, name):
    assert FUNCTION_CHECKERS[name](solution(name, F=F)), capsys.readouterr().out
    assert capsys.readouterr().out.startswith("correct")


def test_the_revealed_value_answers_pass(capsys, tok):
    real = me.ModelConfig.mistral_7b_instruct_v02()
    for name, checker in [("weight_gib", exercises.check_weight_gib), ("tokens_that_fit", exercises.check_tokens_that_fit),
                          ("normalized_length", exercises.check_normalized_length)]:
        namespace = {"math": math, "real": real, "parameter_count": parameter_count}
        exec(EXERCISES[name].solution, namespace)
        assert checker(namespace[name]), capsys.readouterr().out
    assert exercises.check_chat_ids(solution("chat_ids", tok=tok), tok), capsys.readouterr().out
    assert exercises.check_bpe_encode(solution("bpe_encode"), tok), capsys.readouterr().out


def test_the_revealed_induction_head_solution_passes(capsys):
    from mistral_edu.exercises.patching import _checker_model
    model = _checker_model()
    induction_scores = solution("induction_scores")
    find = solution("induction_head", induction_scores=induction_scores)
    tokens = exercises.repeated_tokens(model.cfg.vocab_size, period=6, batch=2)
    assert exercises.check_induction_head(find(model, tokens, 6), model, 6, 2), capsys.readouterr().out


WORKSHOP_PHRASES = {"welcome and set-up check": "welcome and set-up check", "rms_norm": "RMSNorm", "rope": "RoPE",
                    "decode_step": "one cached decoding step", "break": "break", "induction_scores": "induction scores",
                    "induction_head": "find an induction head", "patching": "patch an activation",
                    "wrap-up with 10_workshop_solutions.ipynb": "wrap-up"}


def test_the_workshop_plan_fits_its_length_with_slack():
    schedule = catalogue.workshop_schedule()
    names = [what for what, _ in schedule]
    assert names[0].startswith("welcome") and "break" in names and names[-1].startswith("wrap-up")
    assert catalogue.workshop_slack() >= 15
    assert sum(minutes for _, minutes in schedule) + catalogue.workshop_slack() == catalogue.WORKSHOP_MINUTES
    for part in catalogue.WORKSHOP_PLAN:
        if isinstance(part, str):
            assert "10" in EXERCISES[part].notebook.split(", "), part


def _timing_text(text, start, end):
    import re
    return re.sub(r"\s+", " ", text.split(start, 1)[1].split(end, 1)[0])


@pytest.mark.parametrize("where", ["README.md", "notebooks/src/10_workshop.md"])
def test_the_readme_and_the_workshop_notebook_state_the_catalogue_plan(where):
    """Each part of the plan, with its minutes, in order; the length and the slack as the catalogue has them."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / where).read_text()
    timing = (_timing_text(text, "instructor guide", "**Before the day.**") if where == "README.md"
              else _timing_text(text, "**Timing", "The tag a checker prints"))
    assert f"{catalogue.WORKSHOP_MINUTES // 60} hours" in timing
    at = 0
    for what, minutes in catalogue.workshop_schedule():
        match = re.compile(re.escape(WORKSHOP_PHRASES[what]) + r",? (\d+)", re.I).search(timing, at)
        assert match, f"{where} does not time {WORKSHOP_PHRASES[what]!r} after position {at}"
        assert int(match.group(1)) == minutes, (where, what)
        at = match.end()
    assert re.search(r"slack (\d+)", timing).group(1) == str(catalogue.workshop_slack())


def test_the_workshop_notebook_sections_carry_the_catalogue_minutes():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "notebooks/src/10_workshop.md").read_text()
    headers = re.findall(r"^## \d\. .*\(≈ ([\d +=]+) min\)$", text, re.M)
    exercise_minutes = [EXERCISES[p].minutes for p in catalogue.WORKSHOP_PLAN if isinstance(p, str)]
    stated = [int(n) for header in headers for n in re.findall(r"\d+", header.split("=")[0])]
    assert stated == exercise_minutes
