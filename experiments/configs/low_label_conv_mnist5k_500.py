"""`low_label_conv_mnist5k` at 500 labels.

Command::

    experiments low_label_conv_mnist5k_500 --workdir runs/low_label_conv_mnist5k_500

The same encoder, strategies, baselines and 5 seeds as
`low_label_conv_mnist5k`, at the one budget of 500 labels, which would take
that experiment past 90 minutes on 2 CPU cores. Its runs took 81 minutes
on 2 CPU cores shared with other jobs. All labels (3,333) is the
experiment `low_label_conv_mnist5k_all`, with fewer epochs.

Result (2026-12-04): scratch is best (0.946), ahead of `gradual` by 0.018
(p = 0.007); both beat logistic regression on pixels (0.856).

Results are on docs/results.md.
"""

import ml_collections

from experiments.configs import low_label_conv_mnist5k


def get_config() -> ml_collections.ConfigDict:
    config = low_label_conv_mnist5k.get_config()
    config.budgets = ("500",)
    return config
