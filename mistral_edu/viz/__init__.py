"""Pictures of the model's insides: matplotlib figures and an ipywidgets explorer, nothing fetched online.

Every figure function returns a matplotlib Figure (shown once when it is a cell's value) and saves a
PNG when given save="path.png". Lesson-specific figures live in viz.lessons and viz.lessons_advanced.
"""
from .attention import attention_heatmap, gqa_grid, head_heatmap
from .explorer import AttentionExplorer, precompute_patterns
from .figure import token_labels
from .summaries import (head_entropy, head_scores, head_summaries, logit_lens_heatmap, patching_heatmap,
                        residual_norms)

__all__ = ["AttentionExplorer", "attention_heatmap", "gqa_grid", "head_entropy", "head_heatmap", "head_scores",
           "head_summaries", "logit_lens_heatmap", "patching_heatmap", "precompute_patterns", "residual_norms",
           "token_labels"]
