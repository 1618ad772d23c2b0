"""Statistics over seeds of an experiment's results rows.

Rows are dicts with at least dataset, method, label_budget, seed, labels and
test_accuracy (as in results.csv). A row without `dataset` counts as dataset
"". Intervals are two-sided 95% Student t intervals over seeds, given as the
half-width. They and the t-test need at least two seeds, so they are None
for a single seed.
"""

from collections import defaultdict

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


def budget_sort_key(budget: str) -> float:
    return float("inf") if budget == "all" else float(budget)


def cell_key(row: dict) -> tuple[str, str, str]:
    """Return (dataset, method, label budget) of a row."""
    return (str(row.get("dataset", "")), row["method"], str(row["label_budget"]))


def t_half_width(values: np.ndarray) -> float | None:
    """Return the half-width of the 95% t interval of the mean of `values`."""
    n = len(values)
    if n < 2:
        return None
    sem = np.std(values, ddof=1) / np.sqrt(n)
    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * sem)


def summary_stats(rows: list[dict], column: str = "test_accuracy") -> dict:
    """Per (dataset, method, budget): mean, std (ddof=1), ci95, runs, labels.

    Rows whose `column` is None or empty are left out, so a column that only
    some methods have (the probes) summarises those methods only.
    """
    groups = defaultdict(list)
    labels = defaultdict(list)
    for row in rows:
        value = row.get(column)
        if value is None or value == "":
            continue
        groups[cell_key(row)].append(float(value))
        labels[cell_key(row)].append(int(row["labels"]))
    summary = {}
    for key, values in groups.items():
        values = np.asarray(values)
        summary[key] = {
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "ci95": t_half_width(values),
            "runs": len(values),
            "labels": int(np.mean(labels[key])),
        }
    return summary


def accuracy_by_seed(rows: list[dict], key: tuple[str, str, str]) -> dict:
    """Map seed to test accuracy for one (dataset, method, budget) cell."""
    return {
        int(row["seed"]): float(row["test_accuracy"])
        for row in rows
        if cell_key(row) == key
    }


def paired_difference(ours: dict, theirs: dict) -> dict | None:
    """Compare two {seed: accuracy} maps on the seeds present in both.

    Returns the mean difference (ours - theirs), its 95% t half-width, the
    two-sided paired t-test p value and the number of seeds, or None when no
    seed is shared. p is None with fewer than two seeds or when every
    difference is the same up to 1e-12 (the t statistic is then undefined).
    """
    seeds = sorted(set(ours) & set(theirs))
    if not seeds:
        return None
    a = np.array([ours[s] for s in seeds])
    b = np.array([theirs[s] for s in seeds])
    difference = a - b
    p_value = None
    # Differences equal up to rounding (0.9 - 0.8 against 0.8 - 0.7) leave the
    # t statistic as noise over noise, so they count as constant.
    constant = np.allclose(difference, difference[0], rtol=0.0, atol=1e-12)
    if len(seeds) > 1 and not constant:
        p_value = float(stats.ttest_rel(a, b).pvalue)
    return {
        "mean": float(difference.mean()),
        "ci95": t_half_width(difference),
        "p": p_value,
        "seeds": len(seeds),
    }


def differences_from(rows: list[dict], reference: str = "scratch") -> dict:
    """Per (dataset, method, budget): the paired difference from `reference`."""
    keys = sorted({cell_key(row) for row in rows})
    result = {}
    for dataset, method, budget in keys:
        if method == reference:
            continue
        base = accuracy_by_seed(rows, (dataset, reference, budget))
        ours = accuracy_by_seed(rows, (dataset, method, budget))
        compared = paired_difference(ours, base)
        if compared is not None:
            result[dataset, method, budget] = compared
    return result
