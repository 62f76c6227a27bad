"""The public facade: every exported name resolves, each is documented in docs/python-api.md,
and no exported name shadows one of segment-anything's."""

from __future__ import annotations

import re

import segment_anything

import persam_video
from tests.helpers import REPO_ROOT


def test_every_public_name_resolves_and_is_documented():
    docs = (REPO_ROOT / "docs" / "python-api.md").read_text(encoding="utf-8")
    for name in persam_video.__all__:
        assert getattr(persam_video, name) is not None
        if name != "__version__":
            assert re.search(rf"\b{name}\b", docs), f"{name} is not in docs/python-api.md"


def test_no_public_name_clashes_with_segment_anything():
    assert not set(persam_video.__all__) & set(dir(segment_anything))
