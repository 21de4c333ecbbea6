"""The embedded default model: its checkpoint, model card, held-out text, corpus preparation and training.

The files here are what `load_model()` falls back to without the real weights; `corpus.py` prepares
the training text and `train.py` retrains the model (`python -m mistral_edu.default.train`).
"""
from pathlib import Path

from .corpus import heldout_labelled, heldout_sample

DEFAULT_DIR = Path(__file__).parent

__all__ = ["DEFAULT_DIR", "heldout_labelled", "heldout_sample"]
