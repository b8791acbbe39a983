"""The unit lists and stores each chapter of the book reads (tiny/smoke suite or hub Pythia).

One module per part of the book:

- :mod:`kltools.experiments.pretraining` — checkpoints of every size and seed (chapters
  ``method``, ``trajectories``, ``consecutive``, ``seeds_sizes``, ``diffusion``).

Nothing here imports torch at import time.
"""

from __future__ import annotations
