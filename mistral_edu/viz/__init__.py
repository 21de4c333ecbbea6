"""Pictures of the model's insides, one module per topic: matplotlib figures, self-contained HTML views
and ipywidgets, nothing fetched online.

Every figure function returns its matplotlib Figure (a notebook shows it once, as the cell's value;
nothing global such as rcParams is changed) and saves a PNG when given save="path.png".

    architecture architecture_diagram, you_are_here (the whole model, or one lesson's part of it)
    tokens       pieces_html, show_pieces, vocabulary_chart, token_count_chart
    norms        vectors_heatmap, residual_norms, accumulation_error_figure, norm_gains_figure
    rope         rotation_figure, wavelengths_figure, score_grid_figure, rope_pair_figure
    attention    attention_heatmap, head_heatmap, gqa_grid, gqa_diagram, masks_figure,
                 softmax_temperature_figure, head_scores, entropy_by_layer_chart
    feed_forward activations_figure
    generation   decode_cost_chart, rolling_buffer_chart, sampling_chart
    memory       memory_fit_chart, kv_cache_chart, breakdown_chart, bandwidth_chart, parameter_chart
    circuits     logit_lens_heatmap, position_layer_heatmap, loss_by_position_chart
    distributions spread_chart, spread_curves (a measurement over many draws: every draw, mean, 10th percentile)
    explorers    token_explorer, rope_explorer (ipywidgets: Python recomputes as you type)
    views        attention_explorer, head_overview, logit_lens_table, will_it_fit: HTML views that run without a kernel
    figure       token_labels (readable labels for token ids) and the shared figure style
"""
from .architecture import architecture_diagram, you_are_here
from .attention import (attention_heatmap, entropy_by_layer_chart, gqa_diagram, gqa_grid, head_heatmap, head_scores,
                        masks_figure, softmax_temperature_figure)
from .circuits import logit_lens_heatmap, loss_by_position_chart, position_layer_heatmap
from .distributions import spread_chart, spread_curves
from . import views
from .explorers import rope_explorer, token_explorer
from .feed_forward import activations_figure
from .figure import token_labels
from .generation import decode_cost_chart, rolling_buffer_chart, sampling_chart
from .memory import bandwidth_chart, breakdown_chart, kv_cache_chart, memory_fit_chart, parameter_chart
from .norms import accumulation_error_figure, norm_gains_figure, residual_norms, vectors_heatmap
from .rope import rope_pair_figure, rotation_figure, score_grid_figure, wavelengths_figure
from .tokens import pieces_html, show_pieces, token_count_chart, vocabulary_chart

__all__ = ["accumulation_error_figure", "activations_figure", "architecture_diagram", "attention_heatmap",
           "bandwidth_chart", "breakdown_chart",
           "decode_cost_chart", "entropy_by_layer_chart", "gqa_diagram", "gqa_grid", "head_heatmap", "head_scores",
           "kv_cache_chart", "logit_lens_heatmap", "loss_by_position_chart", "masks_figure", "memory_fit_chart",
           "norm_gains_figure", "parameter_chart", "pieces_html", "position_layer_heatmap",
           "residual_norms", "rolling_buffer_chart", "rope_explorer", "rope_pair_figure", "rotation_figure",
           "sampling_chart", "score_grid_figure", "show_pieces", "softmax_temperature_figure", "spread_chart",
           "spread_curves", "token_count_chart",
           "token_explorer", "token_labels", "vectors_heatmap", "views", "vocabulary_chart", "wavelengths_figure",
           "you_are_here"]
