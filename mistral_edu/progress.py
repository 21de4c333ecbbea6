"""Progress bars for long work (loading 14.5 GB, quantising, streaming a forward pass, retraining).

tqdm's bars, the convention users know; tqdm.auto draws a widget in Jupyter and text on a terminal's
stderr. A bar appears only once the work has run for SHOW_AFTER_S seconds (tqdm's `delay`), so quick
work, such as everything done with the embedded default, prints nothing and leaves no widget in a
saved notebook; verbose=False silences it whatever the time.
"""
from __future__ import annotations

from tqdm.auto import tqdm

# Work that finishes sooner than this shows no bar at all.
SHOW_AFTER_S = 2.0


def progress(total: int, description: str, unit: str = "it", verbose: bool = True, in_bytes: bool = False) -> tqdm:
    """A bar of `total` steps (bytes, shown as kB/MB/GB, when in_bytes) with rate and ETA; use it as a context.

    verbose=False gives a disabled bar: the same calls (update, close), nothing printed.
    """
    return tqdm(total=total, desc=description, unit="B" if in_bytes else unit, unit_scale=in_bytes,
                unit_divisor=1000, delay=SHOW_AFTER_S, disable=not verbose, leave=False, dynamic_ncols=True)
