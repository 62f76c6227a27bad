"""What a run starts from: a first-frame mask or saved targets, and the words for each mistake."""

from __future__ import annotations

import pytest

from persam_video.apps.track import check_mask_or_targets


def test_neither_and_both_are_refused_with_their_own_words():
    check_mask_or_targets(True, False)
    check_mask_or_targets(False, True)
    with pytest.raises(ValueError, match="nothing to track from"):
        check_mask_or_targets(False, False)
    with pytest.raises(ValueError, match="not both"):
        check_mask_or_targets(True, True)
