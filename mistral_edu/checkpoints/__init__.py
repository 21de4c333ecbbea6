"""Checkpoints: find weights, read and write safetensors, both layouts, and load_model's strategies.

find.py finds a folder and its layout; layouts.py maps names and q/k rows between Mistral's layout
and Hugging Face's; safetensors_io.py reads and writes the files; load.py plans and loads (full,
mistral_edu/int8.py or streaming.py); save.py writes both layouts.
"""
from .find import Checkpoint, find_checkpoint, read_config
from .layouts import hf_state_dict, permute_for_hf, unpermute_from_hf
from .load import default_dtype, load_model, load_tokenizer, parse_device, plan_load
from .safetensors_io import LazyTensor, SafetensorsFile, write_safetensors
from .save import save_consolidated, write_consolidated, write_hf

__all__ = ["Checkpoint", "LazyTensor", "SafetensorsFile", "default_dtype", "find_checkpoint", "hf_state_dict",
           "load_model", "load_tokenizer", "parse_device", "permute_for_hf", "plan_load", "read_config",
           "save_consolidated", "unpermute_from_hf", "write_consolidated", "write_hf", "write_safetensors"]
