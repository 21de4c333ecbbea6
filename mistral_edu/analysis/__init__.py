"""Tools for looking inside the model: head-detection scores and friends, and where an overflow begins."""
from .baselines import uniform_baseline, uniform_entropy, uniform_position_baseline
from .distributions import MIN_DRAWS, Distribution, over_draws
from .guards import is_trained_default, shows_behaviour
from .heads import (attention_patterns, duplicate_token_score, duplicate_token_scores, first_token_score,
                    first_token_scores, head_entropy, induction_score, induction_scores, previous_token_score,
                    previous_token_scores, repeated_random_tokens, top_heads, word_token_ids)
from .ablation import (ablate_heads, ablate_layer, direction_ablation_hooks, head_ablation_effects,
                       head_ablation_hooks, layer_ablation_hooks)
from .attribution import LogitAttribution, direct_logit_attribution
from .logit_lens import LogitLens, logit_lens
from .circuits import (HeadWeights, composition_score, composition_scores, copying_score, diagonal_ranks,
                       head_weights, ov_circuit, path_ablation_hooks, qk_circuit, random_composition_baseline,
                       random_composition_scores, token_residuals, trained_token_ids)
from .nonfinite import NonFiniteWatch, check_finite, residual_points, watch_nonfinite
from .patching import PatchingResult, logit_difference, patch_heads, patch_residual
from .tasks import CopyTask, CopyTasks, corrupted_copy_task, corrupted_copy_tasks
from .probing import (LinearProbe, PassageWindows, balanced_accuracy, passage_windows, passage_split, probe_accuracy,
                      random_token_labels, residual_stack, shared_token_mask, token_identity_accuracy, train_probe)
from .steering import (UnigramClassifier, mean_difference, predicted_scores, random_directions, repetition_share,
                       steered_loss, steering_hooks, word_tokens)
