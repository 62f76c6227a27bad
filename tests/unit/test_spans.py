"""``find``'s spans: hysteresis (gaps bridged, blips dropped), best frames, times, and the
online builder agreeing with the pure function."""

from __future__ import annotations

import numpy as np
import pytest

from persam_video.apps.find import SpanBuilder, find_spans, thumbnail
from persam_video.config import ConfigError, SpanRules


def present(pattern: str) -> list[bool]:
    """``"..111.11.."`` -> per-frame presence."""
    return [c == "1" for c in pattern]


def frames_of(pattern: str, rules: SpanRules | None = None) -> list[tuple[int, int]]:
    return [(s.start_frame, s.end_frame) for s in find_spans(present(pattern), rules=rules)]


def test_one_bad_frame_does_not_split_a_span():
    assert frames_of("..11111.11111..") == [(2, 12)]
    assert frames_of("..1111..11111..") == [(2, 12)]  # two bad frames: still bridged (default)
    assert frames_of("..1111...1111..") == [(2, 5), (9, 12)]  # three: two spans
    assert frames_of("..11111.11111..", SpanRules(max_gap=0)) == [(2, 6), (8, 12)]


def test_a_short_blip_is_not_a_span():
    assert frames_of("...11......") == []
    assert frames_of("1..........") == []
    assert frames_of("...111.....") == [(3, 5)]
    assert frames_of("1.1........") == []  # two present frames, even bridged, are too few
    assert frames_of("1.1.1......") == [(0, 4)]
    assert frames_of("...11......", SpanRules(min_frames=1)) == [(3, 4)]
    assert frames_of("") == [] and frames_of("......") == []


def test_spans_at_the_edges_and_their_counts():
    spans = find_spans(present("1111.1...111"))
    assert [(s.start_frame, s.end_frame, s.present_frames, s.frames) for s in spans] == [
        (0, 5, 5, 6),
        (9, 11, 3, 3),
    ]


def test_best_frame_is_the_highest_score_and_times_are_the_frames_own():
    pattern = "..1111.111.."
    scores = [0.9, 0.9, 0.2, 0.5, 0.8, 0.8, 0.99, 0.3, 0.7, 0.1, 0.95, 0.95]
    times = [i / 25 for i in range(len(pattern))]
    (span,) = find_spans(present(pattern), scores, times)
    # Frame 6 (score 0.99) is absent, so it is not a best frame; ties keep the earliest.
    assert (span.best_frame, span.best_score) == (4, 0.8)
    assert (span.start_s, span.end_s) == (pytest.approx(2 / 25), pytest.approx(9 / 25))
    record = span.to_dict()
    assert record["start_frame"] == 2 and record["end_frame"] == 9 and record["best_frame"] == 4
    no_clock = find_spans(present(pattern), scores)
    assert no_clock[0].start_s is None and no_clock[0].to_dict()["end_s"] is None


def test_builder_keeps_the_payload_of_each_best_frame_only():
    calls = []
    builder: SpanBuilder[int] = SpanBuilder(SpanRules(max_gap=1, min_frames=2))
    closed = []
    pattern, scores = "11.1...11", [0.1, 0.5, 0.0, 0.3, 0.0, 0.0, 0.0, 0.2, 0.9]

    def payload(i: int):
        def make() -> int:
            calls.append(i)
            return i * 10

        return make

    for i, (p, s) in enumerate(zip(present(pattern), scores, strict=True)):
        closed += builder.push(i, None, p, s, payload(i))
    closed += builder.finish()
    assert [(span.start_frame, span.end_frame, data) for span, data in closed] == [
        (0, 3, 10),
        (7, 8, 80),
    ]
    assert calls == [0, 1, 7, 8]  # only frames that became their span's best so far
    with pytest.raises(ValueError, match="in order"):
        builder.push(3, None, True, 1.0)


@pytest.mark.parametrize("seed", range(20))
def test_the_online_builder_equals_a_direct_reading_of_the_rules(seed):
    """Against a plain transcription: runs of present frames joined when the gap between them
    is at most max_gap, kept with at least min_frames present frames."""
    rng = np.random.default_rng(seed)
    flags = list(rng.random(60) < rng.uniform(0.2, 0.8))
    rules = SpanRules(max_gap=int(rng.integers(0, 4)), min_frames=int(rng.integers(1, 5)))
    hits = [i for i, f in enumerate(flags) if f]
    groups: list[list[int]] = []
    for i in hits:
        if groups and i - groups[-1][-1] - 1 <= rules.max_gap:
            groups[-1].append(i)
        else:
            groups.append([i])
    expected = [(g[0], g[-1]) for g in groups if len(g) >= rules.min_frames]
    got = [(s.start_frame, s.end_frame) for s in find_spans(flags, rules=rules)]
    assert got == expected


def test_rules_and_inputs_are_checked():
    with pytest.raises(ConfigError, match="max_gap"):
        SpanRules(max_gap=-1)
    with pytest.raises(ConfigError, match="min_frames"):
        SpanRules(min_frames=0)
    with pytest.raises(ValueError, match="one score and time per frame"):
        find_spans([True, False], [0.5])


def test_thumbnail_draws_the_mask_and_scales_down():
    frame = np.full((480, 640, 3), 100, np.uint8)
    mask = np.zeros((480, 640), bool)
    mask[100:300, 200:400] = True
    image = thumbnail(frame, mask)
    assert image.shape == (240, 320, 3) and image.dtype == np.uint8
    assert not np.array_equal(image[100, 150], image[10, 10])  # inside the mask: coloured
    small = thumbnail(frame[:60, :80], mask[:60, :80])
    assert small.shape == (60, 80, 3)  # never scaled up
