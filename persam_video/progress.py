"""Progress bars (tqdm), one rule for all of them.

A bar shows on a terminal. A *nested* bar (one drawn while another is open, such as the frames
of one DAVIS sequence under the bar of sequences, or PerSAM-F's steps during tracking) is left
out when standard error is not a terminal: in a log file its cursor movements would be escape
codes, and the outer bar and the summary lines already say what happened.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    enabled: bool = True,
    nested: bool = False,
    **kwargs: Any,
) -> tqdm:
    """A tqdm bar (``kwargs`` as tqdm's), hidden unless ``enabled``, and hidden when ``nested``
    and standard error is not a terminal."""
    hidden = not enabled or (nested and not _stderr_is_terminal())
    kwargs.setdefault("dynamic_ncols", True)
    if nested:
        kwargs.setdefault("leave", False)
    return tqdm(iterable, disable=hidden, **kwargs)


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False
