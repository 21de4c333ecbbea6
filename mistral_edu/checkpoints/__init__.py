"""Checkpoints: find weights, read and write safetensors, both layouts, and load_model's strategies."""
from .load import find_checkpoint, load_model, save_consolidated

__all__ = ["find_checkpoint", "load_model", "save_consolidated"]
