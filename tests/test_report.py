"""Experiment tables and the paired comparison on hand-made results."""

import pytest

from experiments.report import comparison_note, markdown_table, summarize


def row(method, budget, seed, accuracy, preset="gradual"):
    return {
        "method": method,
        "label_budget": budget,
        "labels": 100,
        "seed": seed,
        "test_accuracy": accuracy,
        "preset": preset,
    }


def test_summary_mean_and_std():
    rows = [row("ae", "100", s, a) for s, a in enumerate([0.8, 0.9, 1.0])]
    stats = summarize(rows)[("ae", "100")]
    assert stats["mean"] == pytest.approx(0.9)
    assert stats["std"] == pytest.approx(0.1)
    assert stats["runs"] == 3


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
