"""The digits part of `experiments low_label_masked`.

Command::

    experiments low_label_masked_digits --workdir runs/low_label_masked_digits

`mae`, `masked_features` and `scratch` x budgets 20, 50, 100, 500 and all x
5 seeds: 75 fine-tuning runs and 10 pretraining runs. It took 36 minutes
on 2 CPU cores that it shared with another grid for most of the run.
"""

import ml_collections

from experiments.configs.low_label_masked import masked_config


def get_config() -> ml_collections.ConfigDict:
    return masked_config(("digits",))
