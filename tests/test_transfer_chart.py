"""The transfer chart: winners per quadrant, ties, config checks, the files."""

import os

import pytest

from experiments.report import write_report
from experiments.transfer_chart import chart_table, check_chart, winners
from pretrain.config import ConfigError

CHART = {"similar": ("near",), "different": ("far",), "little": "100", "much": "all"}


def row(dataset, method, budget, seed, accuracy, preset="gradual"):
    return {
        "dataset": dataset,
        "method": method,
        "label_budget": budget,
        "labels": 100 if budget == "100" else 1000,
        "seed": seed,
        "test_accuracy": accuracy,
        "preset": preset,
    }


def grid_rows():
    rows = []
    for seed in range(3):
        wobble = 0.001 * seed
        for budget, probe, full in (("100", 0.80, 0.70), ("all", 0.90, 0.95)):
            rows.append(row("near", "probe", budget, seed, probe + wobble))
            rows.append(row("near", "full", budget, seed, full + wobble))
        # On "far" the two strategies swap places by seed: a tie.
        for budget in ("100", "all"):
            rows.append(row("far", "probe", budget, seed, 0.6 + 0.02 * (seed - 1)))
            rows.append(row("far", "full", budget, seed, 0.6 - 0.02 * (seed - 1)))
        rows.append(row("near", "logreg", "100", seed, 0.99, preset="baseline"))
    return rows


def test_chart_winners_skip_baselines():
    cells = winners(grid_rows(), CHART)
    assert cells[("similar", "little")][0]["best"] == "probe"
    assert cells[("similar", "much")][0]["best"] == "full"
    margin = cells[("similar", "much")][0]["margin"]
    assert margin["mean"] == pytest.approx(0.05)
    assert margin["p"] is None  # the same difference on every seed


def test_chart_marks_ties():
    table = "\n".join(chart_table(grid_rows(), CHART))
    different = next(line for line in table.splitlines() if line.startswith("| diff"))
    assert "a tie" in different
    assert "logreg" not in table


def test_report_writes_the_chart(tmp_path):
    write_report(grid_rows(), str(tmp_path), "grid", transfer_chart=CHART)
    assert os.path.getsize(tmp_path / "transfer_chart.png") > 0
    with open(tmp_path / "results.md") as f:
        assert "## Transfer chart" in f.read()


@pytest.mark.parametrize(
    "change, key",
    [
        ({"different": ("near", "far")}, "transfer_chart.different"),
        ({"much": "5000"}, "transfer_chart.much"),
        ({"much": "100"}, "transfer_chart.much"),
        ({"extra": 1}, "transfer_chart"),
    ],
)
def test_bad_chart_is_rejected(change, key):
    with pytest.raises(ConfigError, match=key):
        check_chart({**CHART, **change}, ("near", "far"), ("100", "all"))


def test_chart_skips_outside_datasets(caplog):
    with caplog.at_level("WARNING", logger="experiments.transfer_chart"):
        check_chart(
            {**CHART, "different": ("far", "elsewhere")},
            ("near", "far"),
            ("100", "all"),
        )
    assert "elsewhere" in caplog.text


def test_single_seed_has_no_test():
    rows = [r for r in grid_rows() if r["seed"] == 0]
    table = "\n".join(chart_table(rows, CHART))
    assert "one seed, so no test" in table
