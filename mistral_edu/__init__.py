"""mistral_edu: Mistral-7B-Instruct-v0.2 built block by block in plain PyTorch, for learning."""
# Raised whenever a notebook needs something new; each notebook checks it in its first cell (NEEDS).
__version__ = "0.4.0"

from . import memory
from .config import ModelConfig
from .generation import chat, generate
from .hooks import ActivationCache, HookPoint
from .model import KVCache, Transformer
from .tokenizer import Tokenizer
from .checkpoints import find_checkpoint, load_model, load_tokenizer, save_consolidated

__all__ = ["ActivationCache", "HookPoint", "KVCache", "ModelConfig", "Tokenizer", "Transformer", "chat",
           "find_checkpoint", "generate", "load_model", "load_tokenizer", "memory", "save_consolidated"]
