"""Classical baselines on the same label subsets as the fine-tuning runs."""

import logging
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from pretrain.data import fit_scaler, label_split, load_dataset, parse_budget

logger = logging.getLogger(__name__)


def _models(seed: int) -> dict:
    return {
        "logreg_pixels": LogisticRegression(max_iter=2000),
        "mlp_sklearn": MLPClassifier(
            hidden_layer_sizes=(256,), max_iter=1000, random_state=seed
        ),
    }


def baseline_rows(experiment, seed: int) -> list[dict]:
    """Fit each baseline on the labelled subset of every budget for `seed`.

    The subsets come from `label_split` with the same seed as the fine-tuning
    runs, so the comparison is paired. Inputs use minmax scaling fitted on the
    training pool, as the pretrained encoders do.
    """
    dataset = load_dataset(experiment.dataset)
    scaler = fit_scaler(dataset.train_x, "minmax")
    pool_x = scaler.apply(dataset.train_x).reshape(len(dataset.train_x), -1)
    test_x = scaler.apply(dataset.test_x).reshape(len(dataset.test_x), -1)
    rows = []
    for budget in experiment.budgets:
        split = label_split(
            dataset.train_y, parse_budget(budget), dataset.num_classes, seed
        )
        x, y = pool_x[split.train_idx], dataset.train_y[split.train_idx]
        for name, model in _models(seed).items():
            with warnings.catch_warnings():
                # Small label sets converge slowly; max_iter bounds the cost.
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(x, y)
            accuracy = float(np.mean(model.predict(test_x) == dataset.test_y))
            rows.append(
                {
                    "dataset": experiment.dataset,
                    "method": name,
                    "preset": "baseline",
                    "labels": len(y),
                    "label_budget": budget,
                    "seed": seed,
                    "test_accuracy": accuracy,
                    "val_accuracy": None,
                    "lr_multiplier": None,
                }
            )
            logger.info("%s, %s labels, seed %d: %.4f", name, budget, seed, accuracy)
    return rows
