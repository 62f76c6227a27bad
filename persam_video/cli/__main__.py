"""``python -m persam_video.cli``: the same as the ``persam-video`` command."""

from persam_video.cli import main

main()
