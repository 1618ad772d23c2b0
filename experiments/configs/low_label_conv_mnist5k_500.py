"""`low_label_conv_mnist5k` at 500 labels.

Command::

    experiments low_label_conv_mnist5k_500 --workdir runs/low_label_conv_mnist5k_500

The same encoder, strategies, baselines and 5 seeds as
`low_label_conv_mnist5k`, at the one budget of 500 labels, which would take
that experiment past 90 minutes on 2 CPU cores. All labels (3,333) stays
out: a `gradual` cell there would take about an hour on 2 CPU cores
(an estimate from the cells at 100 and 500 labels).

Results are on docs/results.md.
"""

import ml_collections

from experiments.configs import low_label_conv_mnist5k


def get_config() -> ml_collections.ConfigDict:
    config = low_label_conv_mnist5k.get_config()
    config.budgets = ("500",)
    return config
