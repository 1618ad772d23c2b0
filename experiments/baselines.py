"""Classical baselines on the same label subsets as the fine-tuning runs.

Every baseline gets inputs with minmax scaling fitted on the training pool,
as the pretrained encoders do, and the labelled subset that `label_split`
draws with the same seed as the fine-tuning runs, so the comparison is
paired. `bernoulli_rbm_logreg` also uses the unlabelled pool: its RBM is
fitted once per (dataset, seed) and shared by every budget.
"""

import logging
import time
import warnings

import numpy as np
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import BernoulliRBM, MLPClassifier

from pretrain import config as config_lib
from pretrain.data import fit_scaler, label_split, load_dataset, parse_budget

logger = logging.getLogger(__name__)

BASELINES = (
    "logreg_pixels",
    "mlp_sklearn",
    "pca_logreg",
    "knn_pixels",
    "bernoulli_rbm_logreg",
)
# Baselines of an experiment config without a `baselines` key.
LEGACY_BASELINES = ("logreg_pixels", "mlp_sklearn")
RBM_HIDDEN = 256
# Few passes keep the fit to seconds on CPU; the features are for a baseline,
# not a tuned RBM.
RBM_EPOCHS = 10


def baseline_names(setting) -> tuple[str, ...]:
    """Resolve `config.baselines`: True is all, False or () none, or names."""
    if setting is True:
        return BASELINES
    if setting is False or setting is None:
        return ()
    names = (setting,) if isinstance(setting, str) else tuple(setting)
    for name in names:
        config_lib.check(
            name in BASELINES,
            "baselines",
            setting,
            f"unknown baseline {name!r}; use True, False or names from "
            f"{list(BASELINES)}",
        )
    return names


def _logreg() -> LogisticRegression:
    return LogisticRegression(max_iter=2000)


def _fit_score(model, x, y, test_x, test_y) -> float:
    with warnings.catch_warnings():
        # Small label sets converge slowly; max_iter bounds the cost.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    return float(np.mean(model.predict(test_x) == test_y))


def _pca_logreg(x, y, test_x, test_y, seed) -> float:
    # At most n - 1 components carry variance of n centred examples.
    components = max(1, min(50, len(y) - 1, x.shape[1]))
    pca = PCA(n_components=components, random_state=seed).fit(x)
    return _fit_score(_logreg(), pca.transform(x), y, pca.transform(test_x), test_y)


def fit_rbm(pool_x: np.ndarray, seed: int) -> BernoulliRBM:
    """Fit a BernoulliRBM on the unlabelled pool, flattened and in [0, 1]."""
    rbm = BernoulliRBM(
        n_components=RBM_HIDDEN,
        learning_rate=0.05,
        batch_size=32,
        n_iter=RBM_EPOCHS,
        random_state=seed,
    )
    return rbm.fit(np.clip(pool_x, 0.0, 1.0))


def score_baseline(name, x, y, test_x, test_y, seed, rbm=None) -> float:
    """Fit baseline `name` on (x, y) and return its test accuracy."""
    if name == "logreg_pixels":
        return _fit_score(_logreg(), x, y, test_x, test_y)
    if name == "mlp_sklearn":
        model = MLPClassifier(
            hidden_layer_sizes=(256,), max_iter=1000, random_state=seed
        )
        return _fit_score(model, x, y, test_x, test_y)
    if name == "pca_logreg":
        return _pca_logreg(x, y, test_x, test_y, seed)
    if name == "knn_pixels":
        model = KNeighborsClassifier(n_neighbors=min(5, len(y)))
        return _fit_score(model, x, y, test_x, test_y)
    if name == "bernoulli_rbm_logreg":
        features = rbm.transform(np.clip(x, 0.0, 1.0))
        test_features = rbm.transform(np.clip(test_x, 0.0, 1.0))
        return _fit_score(_logreg(), features, y, test_features, test_y)
    raise ValueError(f"unknown baseline {name!r}")


def baseline_rows(
    experiment,
    seed: int,
    *,
    dataset: str | None = None,
    names: tuple[str, ...] | None = None,
    split_seed: int = 0,
    data_dir: str = "",
) -> list[dict]:
    """Fit each baseline on the labelled subset of every budget for `seed`.

    `dataset` defaults to `experiment.dataset` and `names` to the experiment's
    `baselines` setting (`LEGACY_BASELINES` where it has none). Each row has
    `pretrain_seconds` (the RBM fit, for the RBM baseline) and
    `finetune_seconds` (the supervised fit and test prediction).
    """
    dataset = dataset or experiment.dataset
    if names is None:
        names = baseline_names(experiment.get("baselines", LEGACY_BASELINES))
    data = load_dataset(dataset, split_seed=split_seed, data_dir=data_dir or None)
    scaler = fit_scaler(data.train_x, "minmax")
    pool_x = scaler.apply(data.train_x).reshape(len(data.train_x), -1)
    test_x = scaler.apply(data.test_x).reshape(len(data.test_x), -1)

    rbm, rbm_seconds = None, None
    if "bernoulli_rbm_logreg" in names:
        start = time.perf_counter()
        rbm = fit_rbm(pool_x, seed)
        rbm_seconds = time.perf_counter() - start

    rows = []
    for budget in experiment.budgets:
        split = label_split(data.train_y, parse_budget(budget), data.num_classes, seed)
        x, y = pool_x[split.train_idx], data.train_y[split.train_idx]
        for name in names:
            start = time.perf_counter()
            accuracy = score_baseline(name, x, y, test_x, data.test_y, seed, rbm)
            seconds = time.perf_counter() - start
            rbm_used = name == "bernoulli_rbm_logreg"
            rows.append(
                {
                    "dataset": dataset,
                    "method": name,
                    "pretrain_method": "",
                    "preset": "baseline",
                    "labels": len(y),
                    "label_budget": str(budget),
                    "seed": seed,
                    "test_accuracy": accuracy,
                    "val_accuracy": None,
                    "lr_multiplier": None,
                    "pretrain_seconds": rbm_seconds if rbm_used else None,
                    "finetune_seconds": seconds,
                    # Fitted on this dataset's own training pool.
                    "scaling": "refit",
                    "pretrain_scaling": "minmax",
                    "split": split,
                }
            )
            logger.info(
                "%s on %s, %s labels, seed %d: test accuracy %.4f",
                name,
                dataset,
                budget,
                seed,
                accuracy,
            )
    return rows
