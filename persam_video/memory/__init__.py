"""The memory engine: SAM 2.1, EdgeTAM and the SAM 3 tracker through Hugging Face transformers.

- :mod:`~persam_video.memory.models`: the models by name, loading a model folder, small random
  configurations;
- :mod:`~persam_video.memory.session`: :class:`MemorySession`, prompts on any frame propagated
  by the tracker with flat memory;
- :mod:`~persam_video.memory.engine`: :class:`MemoryEngine`, the session behind the engine seam.

transformers comes with the ``sam2`` extra (``pip install 'persam-video[sam2]'``).
"""
