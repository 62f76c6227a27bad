"""Applications of the tracker and of PerSAM: what the command line and other front ends run.

- :mod:`~persam_video.apps.track`: a video into an output folder (masks, overlay and masked
  videos, results.json), :func:`track_to_folder`;
- :mod:`~persam_video.apps.find`: the spans where saved targets are present in one clip, with
  thumbnails of their best frames (``find`` runs it on many clips);
- :mod:`~persam_video.apps.visualize`: overlays and masked frames;
- :mod:`~persam_video.apps.images`: find a saved target in a collection of images;
- :mod:`~persam_video.apps.target_file`: ``.target`` files (save, load, check);
- :mod:`~persam_video.apps.davis`: run a DAVIS-layout dataset, resumable;
- :mod:`~persam_video.apps.demo`: the offline demo on a procedural clip.
"""
