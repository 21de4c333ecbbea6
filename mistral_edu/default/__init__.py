"""The embedded default model: its checkpoint, model card, held-out text and corpus preparation.

The files here are what `load_model()` falls back to without the real weights; `corpus.py` prepares
the training text. Data, below the loaders: it imports nothing else of the package. The training
program that writes these files sits above them, in mistral_edu/training/ (`python -m mistral_edu.training.train`).
"""
from pathlib import Path

from .corpus import heldout_labelled, heldout_sample

DEFAULT_DIR = Path(__file__).parent

__all__ = ["DEFAULT_DIR", "heldout_labelled", "heldout_sample"]
