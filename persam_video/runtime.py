"""Process-wide settings that must be made before torch allocates memory (no torch import here).

PyTorch's CPU allocator takes large buffers straight from the operating system and gives them
back when freed, so each of SAM's big activations (tens of MB per encoder block) is page-faulted
anew, 4 KB at a time, on every frame. On the 2-core CPU this project is developed on, the stock
vit_b encoder spent more time in those page faults (kernel time) than in its matrix multiplies.
With ``THP_MEM_ALLOC_ENABLE=1`` (PyTorch >= 2.2) buffers of 2 MB or more are backed by transparent
huge pages: 512 times fewer faults. The variable is read once, at torch's first allocation.
"""

from __future__ import annotations

import os

#: PyTorch's switch for transparent-huge-page backed CPU buffers.
HUGE_PAGES_ENV = "THP_MEM_ALLOC_ENABLE"


def prefer_huge_pages() -> bool:
    """Enable huge-page backed CPU buffers unless the user set ``THP_MEM_ALLOC_ENABLE`` already.

    Only has an effect before torch's first CPU allocation (call it before ``import torch``).
    Returns whether the setting is on.
    """
    os.environ.setdefault(HUGE_PAGES_ENV, "1")
    return os.environ[HUGE_PAGES_ENV] not in ("", "0")
