"""The tracker's target memory: a bounded bank of embeddings from confident past frames.

The bank is matched alongside the target embedding (a cell's similarity is the best over the
embedding and the bank, :func:`persam_video.persam.prior.memory_similarity`). It holds at most
``capacity`` entries whatever the video's length (the oldest leaves first), and admits a frame
only when its prediction is confident (predicted score and trust gating) and enough frames
have passed since the last entry.
"""

from __future__ import annotations

from collections import deque

import torch
from torch import Tensor


class MemoryBank:
    """At most ``capacity`` (C,) embeddings of confident frames, oldest first."""

    def __init__(self, capacity: int, min_score: float, stride: int) -> None:
        self.capacity, self.min_score, self.stride = capacity, min_score, stride
        self._entries: deque[Tensor] = deque(maxlen=max(capacity, 1))
        self._last_frame: int | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def admits(self, *, score: float, trusted: bool, frame: int) -> bool:
        """Whether a frame would be admitted: the bank is on, ``trusted`` (the area change
        passed the trust gating), ``score`` reaches ``min_score`` and at least ``stride``
        frames passed since the last entry."""
        if self.capacity == 0 or not trusted or score < self.min_score:
            return False
        return self._last_frame is None or abs(frame - self._last_frame) >= self.stride

    def offer(self, embedding: Tensor, *, score: float, trusted: bool, frame: int) -> bool:
        """Admit the (C,) ``embedding`` of frame ``frame`` when :meth:`admits` says so (the
        oldest entry leaves when the bank is full); True when admitted."""
        if not self.admits(score=score, trusted=trusted, frame=frame):
            return False
        self._entries.append(embedding.detach().clone())
        self._last_frame = frame
        return True

    def embeddings(self) -> Tensor | None:
        """(M, C) the entries, or None while empty."""
        return torch.stack(list(self._entries)) if self._entries else None


def memory_embeddings(parts: Tensor | None, bank: MemoryBank) -> Tensor | None:
    """(M, C) what an object's target is matched with besides its embedding: its part
    prototypes (P, C) and its bank's entries, or None when it has neither."""
    pieces = [t for t in (parts, bank.embeddings()) if t is not None]
    return torch.cat(pieces) if pieces else None
