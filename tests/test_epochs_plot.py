"""Accuracy against pretraining epochs: the series and the written plot."""

import os

import pytest

from experiments.epochs_plot import epoch_series
from experiments.report import write_report


def row(method, epochs, seed, accuracy, probe=None):
    return {
        "dataset": "digits",
        "method": f"{method}_e{epochs}",
        "pretrain_method": method,
        "preset": "gradual",
        "label_budget": "100",
        "labels": 100,
        "seed": seed,
        "test_accuracy": accuracy,
        "probe_linear": probe,
        "pretrain_epochs": epochs,
    }


def rows():
    out = []
    for seed in (0, 1):
        out += [row("ae", 10, seed, 0.8 + 0.02 * seed, 0.7), row("ae", 1, seed, 0.5)]
        out.append(row("dbn", 5, seed, 0.6))  # one length only: no series
    scratch = {**row("ae", 1, 0, 0.4), "method": "scratch", "pretrain_epochs": None}
    return out + [scratch]


def test_series_sorted_by_epochs():
    series = epoch_series(rows())
    assert list(series) == [("digits", "ae", "gradual", "100")]
    (e1, mean1, half1), (e10, mean10, half10) = series[
        ("digits", "ae", "gradual", "100")
    ]
    assert (e1, e10) == (1, 10)
    assert mean1 == pytest.approx(0.5)
    assert half1 == 0.0
    assert mean10 == pytest.approx(0.81)
    assert half10 > 0


def test_probe_series_needs_probes():
    assert epoch_series(rows(), "probe_linear") == {}


def test_epochs_plot_needs_two_lengths(tmp_path):
    for name in ("varied", "single"):
        (tmp_path / name).mkdir()
    write_report(rows(), str(tmp_path / "varied"), "grid")
    assert os.path.getsize(tmp_path / "varied" / "accuracy_vs_pretrain_epochs.png")
    single = [r for r in rows() if r["pretrain_method"] == "dbn"]
    write_report(single, str(tmp_path / "single"), "grid")
    assert not os.path.exists(tmp_path / "single" / "accuracy_vs_pretrain_epochs.png")
