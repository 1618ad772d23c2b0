"""Frozen-feature probes of a pretrained encoder on a grid cell's label subset.

The encoder's codes (inference mode, so batch norm uses its running
statistics) are computed once per export for the whole pool and the test
set. Each probe fits on the codes of the cell's labelled training subset and
reports test accuracy: logistic regression on standardised codes, and k-NN
with k = min(5, labels).
"""

import functools
import os
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pretrain.data import LabelSplit, fit_scaler, load_dataset
from pretrain.export import load_encoder
from pretrain.train import predict


def _codes(encoder, x):
    return encoder(x, train=False)


def encoder_codes(
    encoder_dir: str,
    dataset: str,
    split_seed: int,
    data_dir: str,
    scaling: str = "export",
):
    """Return (pool codes, pool labels, test codes, test labels) of an export.

    `scaling` is the fine-tuning key of the same name: "export" scales the
    inputs with the export's scaler, "refit" with one of the same kind fitted
    on the dataset's training pool, as `finetune` does.
    """
    # The modification time keys the cache, so a rewritten export is reloaded.
    mtime = os.path.getmtime(os.path.join(encoder_dir, "encoder.json"))
    return _encoder_codes(encoder_dir, mtime, dataset, split_seed, data_dir, scaling)


@functools.lru_cache(maxsize=2)
def _encoder_codes(encoder_dir, mtime, dataset, split_seed, data_dir, scaling):
    loaded = load_encoder(encoder_dir)
    data = load_dataset(dataset, split_seed=split_seed, data_dir=data_dir or None)
    scaler = loaded.scaler
    if scaling == "refit":
        scaler = fit_scaler(data.train_x, scaler.kind)
    pool = predict(loaded.module, _codes, scaler.apply(data.train_x))
    test = predict(loaded.module, _codes, scaler.apply(data.test_x))
    pool = np.asarray(pool, np.float64).reshape(len(pool), -1)
    test = np.asarray(test, np.float64).reshape(len(test), -1)
    return pool, data.train_y, test, data.test_y


def probe_accuracies(
    encoder_dir: str,
    dataset: str,
    split: LabelSplit,
    *,
    split_seed: int = 0,
    data_dir: str = "",
    scaling: str = "export",
) -> dict[str, float]:
    """Return the test accuracy of the linear and k-NN probes on `split`."""
    pool, pool_y, test, test_y = encoder_codes(
        encoder_dir, dataset, split_seed, data_dir, scaling
    )
    x, y = pool[split.train_idx], pool_y[split.train_idx]
    linear = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    knn = KNeighborsClassifier(n_neighbors=min(5, len(y)))
    results = {}
    for name, model in (("probe_linear", linear), ("probe_knn", knn)):
        with warnings.catch_warnings():
            # Small label sets converge slowly, so max_iter bounds the cost.
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x, y)
        results[name] = float(np.mean(model.predict(test) == test_y))
    return results
