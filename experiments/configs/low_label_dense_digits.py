"""The digits part of `experiments low_label_dense`: all six methods.

Command::

    experiments low_label_dense_digits --workdir runs/low_label_dense_digits

13 strategies (scratch, and each method with `gradual` and `linear_probe`)
x budgets 20, 50, 100, 500 and all x 5 seeds: 325 fine-tuning runs and 30
pretraining runs. `experiments.configs.low_label_dense` describes the
methods.

Estimate: about 44 minutes on 2 CPU cores, an upper bound that assumes
every stage runs all its epochs. It is the per-epoch and
per-run times of 2-epoch smoke runs (1 seed, budgets 20 and all, CPUs
shared with other jobs) times the epochs and runs of the grid. The first
full run took 44 minutes on shared cores. A rerun with commit 4f80488 took
81 minutes on cores shared with three other jobs.

Result (2026-12-04, docs/results.md, the rerun): at 20 labels `ae`, `dae`,
`dbn`, `deep_ae` and `sparse_ae` beat scratch by 0.04 to 0.06 (p < 0.05),
and at 50 labels `ae`, `dae` and `deep_ae` by 0.01 to 0.02 (p < 0.05).
From 100 labels on no method beats it; at 100 labels the best reaches
0.917 against 0.898.
"""

import ml_collections

from experiments.configs.low_label_dense import METHODS, dense_config


def get_config() -> ml_collections.ConfigDict:
    return dense_config(("digits",), METHODS)
