"""The exercises of every notebook: one checker per concept, with tiered help.

Running an unsolved stub prints only the task, its difficulty and time; hint(name) gives the
concept, a second call the next step; reveal(name) prints a solution. A wrong answer gets the
diagnosis of its specific mistake. Every checker returns a Verdict: truthy when solved, invisible as
a notebook cell's last value, so only the printed line shows. Every reference answer is computed by
the package itself, so a checker and the lesson can never disagree.

    from mistral_edu import exercises
    exercises.check_rms_norm(my_rms_norm)
    exercises.hint("rms_norm")
"""
from .ablation import check_ablate_head, check_head_position_patching
from .attention import check_decode_step, check_grouped_attention, check_repeat_kv
from .block import check_transformer_block
from .catalogue import EXERCISES, Exercise, hint, reveal
from .composition import check_k_composition
from .copying import check_ov_copying
from .decoding import check_crossover_context, check_decode_tokens_per_second, check_matmul_intensity
from .generation import check_rolling_slot, check_sampler, check_top_p
from .heads import (check_head_entropy, check_induction_head, check_induction_scores, check_previous_token_scores,
                    model_induction_scores, repeated_tokens)
from .memory import (check_block_parameters, check_kv_bytes_per_token, check_kv_cache_bytes, check_tokens_that_fit,
                     check_weight_bytes, check_weight_gib)
from .patching import check_patching
from .probing import check_balanced_accuracy, check_mean_difference, check_probe_with_control
from .predictions import compare_prediction
from .rmsnorm import check_normalized_length, check_rms_norm
from .rope import check_rope, check_wavelength
from .steering import check_steered_generate
from .tokenizer import bpe_tables, check_bpe_encode, check_bytes_to_text, check_chat_ids
from .verdict import Verdict, assert_close

__all__ = [
    "EXERCISES", "Exercise", "Verdict", "assert_close", "bpe_tables", "hint", "reveal",
    "check_ablate_head", "check_balanced_accuracy", "check_block_parameters", "check_bpe_encode", "check_bytes_to_text",
    "check_chat_ids", "check_crossover_context", "check_decode_step", "check_decode_tokens_per_second",
    "check_grouped_attention", "check_head_entropy", "check_head_position_patching", "check_induction_head",
    "check_induction_scores", "check_k_composition", "check_kv_bytes_per_token", "check_kv_cache_bytes",
    "check_matmul_intensity", "check_mean_difference", "check_normalized_length", "check_ov_copying", "check_patching",
    "check_previous_token_scores", "check_probe_with_control", "check_repeat_kv", "check_rms_norm", "check_rolling_slot",
    "check_rope", "check_sampler", "check_steered_generate", "check_tokens_that_fit", "check_top_p",
    "check_transformer_block", "check_wavelength", "check_weight_bytes", "check_weight_gib", "compare_prediction",
    "model_induction_scores", "repeated_tokens",
]
