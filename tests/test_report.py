"""Experiment statistics, tables and the paired comparison on hand-made results."""

import math
import os

import numpy as np
import pytest
from scipy import stats as scipy_stats

from experiments.report import (
    comparison_note,
    markdown_table,
    probe_table,
    write_report,
)
from experiments.stats import differences_from, paired_difference, summary_stats

# Student t quantile t(0.975, 2 degrees of freedom), from a printed t table.
T_975_DF2 = 4.302652729911275


def row(method, budget, seed, accuracy, preset="gradual", dataset="digits", **extra):
    return {
        "dataset": dataset,
        "method": method,
        "label_budget": budget,
        "labels": 100,
        "seed": seed,
        "test_accuracy": accuracy,
        "preset": preset,
        **extra,
    }


def test_summary_mean_std_interval():
    rows = [row("ae", "100", s, a) for s, a in enumerate([0.8, 0.9, 1.0])]
    stats = summary_stats(rows)[("digits", "ae", "100")]
    assert stats["mean"] == pytest.approx(0.9)
    assert stats["std"] == pytest.approx(0.1)
    assert stats["runs"] == 3
    assert stats["ci95"] == pytest.approx(T_975_DF2 * 0.1 / math.sqrt(3))


def test_summary_single_seed_has_no_interval():
    stats = summary_stats([row("ae", "100", 0, 0.8)])[("digits", "ae", "100")]
    assert stats["std"] == 0.0
    assert stats["ci95"] is None


def test_summary_keys_by_dataset():
    rows = [row("ae", "100", 0, 0.8), row("ae", "100", 0, 0.6, dataset="mnist1d")]
    summary = summary_stats(rows)
    assert summary[("digits", "ae", "100")]["mean"] == pytest.approx(0.8)
    assert summary[("mnist1d", "ae", "100")]["mean"] == pytest.approx(0.6)


def test_paired_difference_by_hand():
    scratch = {0: 0.80, 1: 0.85, 2: 0.83}
    ours = {0: 0.84, 1: 0.86, 2: 0.88, 3: 0.99}  # seed 3 has no partner
    result = paired_difference(ours, scratch)
    difference = np.array([0.04, 0.01, 0.05])
    sd = math.sqrt(np.sum((difference - difference.mean()) ** 2) / 2)
    t_statistic = difference.mean() / (sd / math.sqrt(3))
    assert result["seeds"] == 3
    assert result["mean"] == pytest.approx(0.1 / 3)
    assert result["ci95"] == pytest.approx(T_975_DF2 * sd / math.sqrt(3))
    assert result["p"] == pytest.approx(2 * scipy_stats.t.sf(t_statistic, 2))


def test_paired_difference_constant_has_no_p():
    result = paired_difference({0: 0.9, 1: 0.8}, {0: 0.8, 1: 0.7})
    assert result["mean"] == pytest.approx(0.1)
    assert result["p"] is None


def test_paired_difference_no_shared_seed():
    assert paired_difference({0: 0.9}, {1: 0.8}) is None


def test_differences_skip_reference():
    rows = [row("scratch", "100", s, 0.8, "scratch") for s in range(2)]
    rows += [row("ae", "100", s, 0.9 - 0.01 * s) for s in range(2)]
    differences = differences_from(rows)
    assert set(differences) == {("digits", "ae", "100")}
    assert differences[("digits", "ae", "100")]["mean"] == pytest.approx(0.095)


def test_clear_win_reported_higher():
    rows = [row("scratch", "100", s, 0.80 + 0.01 * s, "scratch") for s in range(4)]
    rows += [row("ae", "100", s, 0.90 + 0.012 * s) for s in range(4)]
    note = comparison_note(rows)
    assert "ae" in note
    assert "higher than scratch" in note


def test_small_difference_not_called_a_win():
    scratch = [0.90, 0.88, 0.93]
    pretrained = [0.91, 0.87, 0.935]
    rows = [row("scratch", "100", s, a, "scratch") for s, a in enumerate(scratch)]
    rows += [row("ae", "100", s, a) for s, a in enumerate(pretrained)]
    note = comparison_note(rows)
    assert "no reliable difference" in note
    assert "higher" not in note


def test_baselines_not_compared_as_pretrained():
    rows = [row("scratch", "100", s, 0.8, "scratch") for s in range(3)]
    rows += [row("logreg_pixels", "100", s, 0.99, "baseline") for s in range(3)]
    assert comparison_note(rows) == ""


def test_table_has_row_per_method():
    rows = [row("scratch", b, 0, 0.8, "scratch") for b in ("50", "all")]
    rows += [row("ae", b, 0, 0.9) for b in ("50", "all")]
    table = markdown_table(rows, "title")
    assert "| scratch |" in table
    assert "| ae |" in table
    assert "50 labels" in table
    assert "all labels" in table


def test_table_single_seed_shows_no_spread():
    rows = [row("ae", "50", 0, 0.9), row("ae", "100", 0, 0.7), row("ae", "100", 1, 0.8)]
    table = markdown_table(rows, "title")
    assert "| **0.9000 (n=1)** |" in table
    assert "0.7500 ± 0.0707" in table


def test_table_orders_numbers_in_names():
    rows = [row(name, "50", 0, 0.8) for name in ("ae_e30", "ae_e10", "ae_e3", "ae")]
    table = markdown_table(rows, "title")
    positions = [table.index(f"| {name} |") for name in ("ae", "ae_e3", "ae_e10")]
    assert positions == sorted(positions)
    assert table.index("| ae_e10 |") < table.index("| ae_e30 |")


def test_table_bolds_best_per_budget():
    rows = [row("scratch", "50", 0, 0.8, "scratch"), row("ae", "50", 0, 0.9)]
    rows += [row("scratch", "all", 0, 0.97, "scratch"), row("ae", "all", 0, 0.95)]
    table = markdown_table(rows, "title")
    assert "| ae | **0.9000" in table
    assert "| scratch | 0.8000" in table
    assert "| **0.9700" in table


def test_table_section_per_dataset():
    rows = [row("ae", "50", 0, 0.9), row("ae", "50", 0, 0.7, dataset="mnist1d")]
    table = markdown_table(rows, "title")
    assert "## digits" in table
    assert "## mnist1d" in table
    assert table.index("## digits") < table.index("0.9000") < table.index("## mnist1d")


def test_table_has_difference_from_scratch():
    rows = [row("scratch", "50", s, 0.8, "scratch") for s in range(2)]
    rows += [row("ae", "50", s, 0.85 + 0.01 * s) for s in range(2)]
    table = markdown_table(rows, "title")
    assert "Paired difference from scratch" in table
    assert "+0.0550" in table


def test_probe_table_skips_empty_probes():
    rows = [row("scratch", "50", 0, 0.8, "scratch", probe_linear=None, probe_knn=None)]
    rows += [row("ae", "50", 0, 0.9, probe_linear=0.7, probe_knn=0.6)]
    lines = probe_table(rows, "digits")
    assert any(line.startswith("| ae | logistic regression | 0.7000") for line in lines)
    assert any(line.startswith("| ae | k-NN | 0.6000") for line in lines)
    assert not any(line.startswith("| scratch |") for line in lines)


def test_write_report_files(tmp_path):
    rows = [row("ae", b, s, 0.8 + 0.01 * s) for b in ("20", "50") for s in range(2)]
    rows += [row("ae", "20", s, 0.7, dataset="mnist1d") for s in range(2)]
    write_report(rows, str(tmp_path), "title")
    assert os.path.isfile(tmp_path / "results.md")
    assert os.path.isfile(tmp_path / "accuracy_vs_labels.png")
