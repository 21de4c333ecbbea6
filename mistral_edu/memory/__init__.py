"""Parameter and byte arithmetic, derived from a ModelConfig (no weights needed).

One module per job: parameters (counts per tensor and component), formats and gguf (bytes per tensor in
bf16 ... int4, and llama.cpp's per-tensor mixes), kv_cache and activations (what running adds),
bandwidth (the bytes a decode step reads, and the roofline), estimate (the four parts together, as a table,
HTML and a chart), fit (the dtype and the check load_model makes against free memory)
and machines (that choice on named machines and on this one). Import the names from here: `from mistral_edu.memory import estimate`.
"""
from __future__ import annotations

from .activations import (PATHS, PREFILL_CHUNK, ActivationTerm, activation_terms, prefill_activation_bytes,
                          prefill_activations, prefill_path)
from .bandwidth import attainable_flop_rate, decode_bytes_per_step, kv_crossover_context, matmul_intensity
from .checks import check_batch, check_context
from .estimate import CUDA_CONTEXT_BYTES, Estimate, estimate
from .fit import (PLAN_CONTEXT, STRATEGIES, choose_strategy, compute_dtype, free_memory, strategy_bytes,
                  strategy_path, strategy_reason, strategy_weight_bytes)
from .formats import WEIGHT_FORMATS, weight_bytes, weight_bytes_by_component, weight_format
from .gguf import GGUF_FILE_TYPES, PUBLISHED_GGUF_GB, gguf_tensor_type, gguf_type_counts
from .kv_cache import kv_bytes_per_token, kv_cache_bytes
from .machines import MACHINES, Machine, Prediction, expectations, predict, this_machine
from .parameters import component_of, parameter_breakdown, parameter_count, tensor_shapes
from .units import GB, GiB

__all__ = ["ActivationTerm", "CUDA_CONTEXT_BYTES", "Estimate", "GB", "GGUF_FILE_TYPES",
           "GiB", "MACHINES", "Machine", "PATHS", "PLAN_CONTEXT", "PREFILL_CHUNK", "Prediction", "PUBLISHED_GGUF_GB", "STRATEGIES",
           "WEIGHT_FORMATS", "activation_terms", "attainable_flop_rate", "check_batch",
           "check_context", "choose_strategy", "compute_dtype", "component_of", "decode_bytes_per_step", "estimate",
           "expectations", "free_memory", "gguf_tensor_type", "gguf_type_counts", "kv_bytes_per_token",
           "kv_cache_bytes", "kv_crossover_context", "matmul_intensity", "parameter_breakdown", "parameter_count",
           "predict", "prefill_activation_bytes", "prefill_activations", "prefill_path",
           "strategy_bytes", "strategy_path",
           "strategy_reason", "strategy_weight_bytes", "tensor_shapes", "this_machine", "weight_bytes",
           "weight_bytes_by_component", "weight_format"]
