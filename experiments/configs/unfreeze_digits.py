"""The digits part of `experiments unfreeze`: the dense `ae` encoder only.

Command::

    experiments unfreeze_digits --workdir runs/unfreeze_digits

The same four strategies (linear_probe, gradual, full, gradual_drop_top),
budgets 50 and all, and 5 seeds as `unfreeze`, without its mnist1d
Transformer part, which takes most of that grid's time.

Results are on docs/results.md.
"""

import ml_collections

from experiments.configs import unfreeze


def get_config() -> ml_collections.ConfigDict:
    return unfreeze.get_config({"ae": ("digits",)})
