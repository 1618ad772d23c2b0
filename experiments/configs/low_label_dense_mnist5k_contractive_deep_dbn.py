"""A mnist5k part of `experiments low_label_dense`: contractive_ae, deep_ae
and dbn.

Command::

    experiments low_label_dense_mnist5k_contractive_deep_dbn \
        --workdir runs/low_label_dense_mnist5k_contractive_deep_dbn

7 strategies (scratch, and each method with `gradual` and `linear_probe`)
x budgets 20, 50, 100, 500 and all x 5 seeds: 175 fine-tuning runs and 15
pretraining runs. Both mnist5k parts train `scratch` on the same
architecture, seeds and label subsets, so that each part's results.md has
its paired differences from scratch.

Estimate: about 70 minutes on 2 CPU cores, an upper bound that assumes
every stage runs all its epochs. It is the per-epoch and
per-run times of 2-epoch smoke runs (1 seed, budgets 20 and all, CPUs
shared with other jobs) times the epochs and runs of the grid. Measured: 19
minutes on an otherwise idle 2-core AMD EPYC.
"""

import ml_collections

from experiments.configs.low_label_dense import dense_config


def get_config() -> ml_collections.ConfigDict:
    return dense_config(("mnist5k",), ("contractive_ae", "deep_ae", "dbn"))
