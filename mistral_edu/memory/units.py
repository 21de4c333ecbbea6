"""The byte units the memory arithmetic prints: GB for what vendors sell, GiB for what allocators report."""
from __future__ import annotations

GB = 10**9
GiB = 2**30
