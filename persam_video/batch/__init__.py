"""Many clips: a manifest processed locally or on a Ray cluster, resumable, failures isolated.

- :mod:`~persam_video.batch.manifest`: reading and checking a manifest;
- :mod:`~persam_video.batch.clip`: one clip (job, outcome, the task done with it, the runner that
  loads the model once);
- :mod:`~persam_video.batch.ray_backend`: Ray actors (an optional extra);
- :mod:`~persam_video.batch.runner`: :func:`run_batch`;
- :mod:`~persam_video.batch.find`: ``find``: the clips of inputs, the search task, the reports.
"""
