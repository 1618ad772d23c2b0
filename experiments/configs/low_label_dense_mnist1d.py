"""Every dense pretraining method of `experiments low_label_dense` on
MNIST-1D.

Command::

    experiments low_label_dense_mnist1d --workdir runs/low_label_dense_mnist1d

13 strategies (scratch, and each of the six methods with `gradual` and
`linear_probe`) x budgets 20, 50, 100, 500 and all x 5 seeds, on MNIST-1D's
40-sample signals. The encoder widths, epochs and learning-rate search are
those of the digits and mnist5k parts. The signals are real-valued, so `dbn`
uses Gaussian visible units on standardised inputs. The autoencoders keep
the default minmax scaling, under which their first layer reconstructs
with cross-entropy.

It ran as two shards pinned to one core each (the commands of "Running a
grid on a CPU machine" on docs/guide.md, with `--shard 0/2` and `1/2`),
which took 31 and 24 minutes on 2 CPU cores shared at times with test
runs.

Result (2026-12-04): `dbn` beats scratch at 50 and 100 labels (+0.07 and
+0.09, p <= 0.017) and `ae` at 100 (+0.05, p = 0.045). From 500 labels on
no method beats scratch (0.497 with all labels), and k-NN on the raw
signals beats every network there (0.576 with all labels).

Results are on docs/results.md.
"""

import ml_collections

from experiments.configs.low_label_dense import METHODS, dense_config


def get_config() -> ml_collections.ConfigDict:
    config = dense_config(("mnist1d",), METHODS)
    for name in ("dbn", "dbn_probe"):
        config.strategies[name].pretrain.visible = "gaussian"
        config.strategies[name].pretrain.scaling = "standard"
        # At the Bernoulli default of 0.05 the first Gaussian RBM diverges
        # within its first epoch.
        config.strategies[name].pretrain.learning_rate = 0.005
    return config
