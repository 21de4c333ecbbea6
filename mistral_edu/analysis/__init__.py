"""Tools for looking inside the model: head-detection scores and friends, and where an overflow begins."""
from .baselines import uniform_baseline, uniform_entropy, uniform_position_baseline
from .distributions import Distribution, over_draws
from .guards import behaviour_problems, is_trained_default, shows_behaviour
from .heads import (attention_patterns, duplicate_token_score, duplicate_token_scores, first_token_score,
                    first_token_scores, head_entropy, induction_score, induction_scores, previous_token_score,
                    previous_token_scores, repeated_random_tokens, top_heads, word_token_ids)
from .ablation import (ablate_heads, ablate_layer, direction_ablation_hooks, head_ablation_effects,
                       head_ablation_hooks)
from .attribution import direct_logit_attribution
from .logit_lens import logit_lens
from .circuits import (composition_score, composition_scores, copying_score, diagonal_ranks, head_weights, ov_circuit,
                       path_ablation_hooks, qk_circuit, random_composition_baseline, random_composition_scores,
                       token_residuals, trained_token_ids, untrained_token_ids)
from .nonfinite import check_finite, residual_points, watch_nonfinite
from .patching import logit_difference, patch_heads, patch_residual
from .tasks import corrupted_copy_task, corrupted_copy_tasks
from .probing import (PassageWindows, balanced_accuracy, passage_split, passage_windows, probe_accuracy,
                      random_token_labels, residual_stack, shared_token_mask, token_identity_accuracy, train_probe)
from .steering import (UnigramClassifier, mean_difference, predicted_scores, random_directions, repetition_share,
                       steered_loss, steering_hooks, word_tokens)

__all__ = ["ablate_heads", "behaviour_problems", "ablate_layer", "attention_patterns", "balanced_accuracy", "check_finite",
           "composition_score", "composition_scores", "copying_score", "corrupted_copy_task", "corrupted_copy_tasks",
           "diagonal_ranks", "direct_logit_attribution", "direction_ablation_hooks", "Distribution",
           "duplicate_token_score", "duplicate_token_scores", "first_token_score",
           "first_token_scores", "head_ablation_effects", "head_ablation_hooks", "head_entropy", "head_weights",
           "induction_score", "induction_scores", "is_trained_default", "logit_difference",
           "logit_lens", "mean_difference", "over_draws", "ov_circuit", "passage_split",
           "passage_windows", "PassageWindows", "patch_heads",
           "patch_residual", "path_ablation_hooks", "predicted_scores", "previous_token_score",
           "previous_token_scores", "probe_accuracy", "qk_circuit", "random_composition_baseline",
           "random_composition_scores", "random_directions", "random_token_labels",
           "repeated_random_tokens", "repetition_share", "residual_points", "residual_stack", "shared_token_mask",
           "shows_behaviour", "steered_loss", "steering_hooks", "token_identity_accuracy", "token_residuals",
           "top_heads", "train_probe", "trained_token_ids", "uniform_baseline", "untrained_token_ids", "uniform_entropy",
           "uniform_position_baseline", "UnigramClassifier", "watch_nonfinite", "word_token_ids", "word_tokens"]
