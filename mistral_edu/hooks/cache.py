"""ActivationCache: what run_with_cache captured, indexable by full name or (shorthand, layer)."""
from __future__ import annotations

import difflib

import torch

from .names import SHORTHAND, check_index, full_name


class ActivationCache:
    """Activations captured by run_with_cache, indexable by full name or (shorthand, layer).

    head_index maps the name of a pattern or scores captured for a few heads only (run_with_cache's
    pattern_heads) to the heads it holds, in order, so pattern(layer, head) finds them.
    """

    def __init__(self, store: dict[str, torch.Tensor], n_layers: int,
                 head_index: dict[str, tuple[int, ...]] | None = None):
        self._store = store
        self.n_layers = n_layers
        self.head_index = head_index or {}

    def _key(self, key) -> str:
        if isinstance(key, tuple):
            short, layer = key
            key = full_name(short, check_index(layer, self.n_layers, "layer"))
        elif key not in self._store and key in SHORTHAND:
            key = full_name(key)
        if key not in self._store:
            close = difflib.get_close_matches(key, list(self._store), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise KeyError(f"{key!r} was not captured{hint} (pass it in names= to run_with_cache)")
        return key

    def __getitem__(self, key) -> torch.Tensor:
        return self._store[self._key(key)]

    def __contains__(self, key) -> bool:
        try:
            self._key(key)
        except (KeyError, IndexError):
            return False
        return True

    def __len__(self) -> int:
        return len(self._store)

    def __iter__(self):
        return iter(self._store)

    def keys(self):
        return self._store.keys()

    def items(self):
        return self._store.items()

    def pattern(self, layer: int, head: int, batch: int = 0) -> torch.Tensor:
        """One head's (query rows, keys) attention pattern, whether all heads or a few were captured."""
        name = self._key(("pattern", layer))
        pattern = self._store[name]                                # (batch, heads kept, rows kept, keys)
        kept = self.head_index.get(name)
        if kept is None:
            return pattern[batch, head]                            # (rows kept, keys)
        if head not in kept:
            raise KeyError(f"head {head} of layer {layer} was not captured: pattern_heads kept {list(kept)}")
        return pattern[batch, kept.index(head)]                    # (rows kept, keys)

    def stack(self, short: str) -> torch.Tensor:
        """One activation of every layer stacked: cache.stack("resid_post") is (n_layers, batch, seq, dim)."""
        return torch.stack([self[short, layer] for layer in range(self.n_layers)])

    def to(self, *args, **kwargs) -> "ActivationCache":
        """A copy with every tensor moved or cast, as Tensor.to."""
        moved = {k: v.to(*args, **kwargs) for k, v in self._store.items()}
        return ActivationCache(moved, self.n_layers, self.head_index)

    def nbytes(self) -> int:
        """Bytes held by the captured tensors."""
        return sum(t.nbytes for t in self._store.values())

    def __repr__(self) -> str:
        return f"ActivationCache({len(self)} activations, {self.nbytes() / 2**20:.2f} MiB)"
