"""mistral_edu: Mistral-7B-Instruct-v0.2 built block by block in plain PyTorch, for learning."""
from . import memory
from .config import ModelConfig
from .generate import chat, generate
from .hooks import ActivationCache, HookPoint
from .kv_cache import KVCache
from .model import Transformer
from .tokenizer import Tokenizer, load_tokenizer
from .weights import find_checkpoint, load_model, save_consolidated

__all__ = ["ActivationCache", "HookPoint", "KVCache", "ModelConfig", "Tokenizer", "Transformer", "chat",
           "find_checkpoint", "generate", "load_model", "load_tokenizer", "memory", "save_consolidated"]
