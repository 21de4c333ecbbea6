"""Named hook points on every activation, the hooks() context, run_with_cache and the activation cache."""
from .cache import ActivationCache
from .names import check_index
from .point import HookPoint, attached_hooks, call_and_check_replaced, hook_points
from .root import HookedRootModule
from .selection import PatternSelection
from .shapes import activation_shapes, full_cache_bytes

__all__ = ["ActivationCache", "HookPoint", "HookedRootModule", "PatternSelection", "activation_shapes", "attached_hooks",
           "call_and_check_replaced", "check_index", "full_cache_bytes", "hook_points"]
