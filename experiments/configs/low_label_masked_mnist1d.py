"""The MNIST-1D part of `experiments low_label_masked`.

Command::

    experiments low_label_masked_mnist1d --workdir runs/low_label_masked_mnist1d

`mae` and `scratch` x budgets 20, 50, 100, 500 and all x 5 seeds: 50
fine-tuning runs and 5 pretraining runs. `masked_features` on MNIST-1D
and mnist5k is the experiment `low_label_masked_features`. It took 31
minutes on 2 CPU cores.
"""

import ml_collections

from experiments.configs.low_label_masked import masked_config


def get_config() -> ml_collections.ConfigDict:
    config = masked_config(("mnist1d",))
    # It runs on digits only in `low_label_masked`.
    del config.strategies["masked_features"]
    return config
