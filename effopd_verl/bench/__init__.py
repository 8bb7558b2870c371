"""The speed-up benchmark behind ``scripts/bench_speedup.py``: vanilla OPD vs EffOPD through
``effopd-train``, scored from every step's checkpoint on a testbed's held-out test split.

- ``measures``: the pure figures (gains, steps to a share of the gain, ratios, the best-vanilla headline,
  the sweep's stability verdict);
- ``arms``: the arms (generated from lr factors), their ``effopd-train`` runs (cached) and the lr sweep;
- ``checkpoint_scores``: the ``Testbed`` protocol and scoring each run's checkpoints through it;
- ``toy_testbed``: the toy task's testbed;
- ``tables``: the printed table, the search log, the Markdown page and the plot.
"""
