"""The digits part of `experiments unfreeze`: the dense `ae` encoder only.

Command::

    experiments unfreeze_digits --workdir runs/unfreeze_digits

The same four strategies (linear_probe, gradual, full, gradual_drop_top),
budgets 50 and all, and 5 seeds as `unfreeze`, without its mnist1d
Transformer part, which takes most of that grid's time. It took 6.5
minutes on 2 CPU cores shared with another grid.

Result (2026-12-04): gradual unfreezing and full fine-tuning are equal
within the seed-to-seed spread at both budgets (0.8656 and 0.8628 at 50
labels, 0.9744 each with all), and the head alone is within that spread.

Results are on docs/results.md.
"""

import ml_collections

from experiments.configs import unfreeze


def get_config() -> ml_collections.ConfigDict:
    return unfreeze.get_config({"ae": ("digits",)})
