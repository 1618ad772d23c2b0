"""Transfer datasets, target scaling and the auto fine-tuning preset."""

import json
import logging
import os
import shutil

import numpy as np
import pytest

from finetune import auto
from finetune.run import check_config, target_scaler
from finetune.run import default_config as finetune_defaults
from finetune.run import run as finetune_run
from pretrain import config as config_lib
from pretrain.code_stats import (
    CODE_STATS_FILE,
    code_statistics,
    collapse_message,
    encode,
    read_code_stats,
    save_code_stats,
    standardized_shift,
)
from pretrain.config import ConfigError
from pretrain.data import fit_scaler, load_dataset
from pretrain.data.builders import (
    Digits,
    Mnist5k8x8,
    Mnist5kNoise,
    Mnist5kRotated,
    Mnist5kSource,
    Mnist5kTarget,
    read_mnist5k_csv,
)
from pretrain.data.loading import _prepare
from pretrain.export import ExportError, load_encoder
from pretrain.run import default_config as pretrain_defaults
from pretrain.run import run as pretrain_run


def built_records(builder_class, data_dir):
    """Prepare `builder_class` in `data_dir`; return images, labels and rows."""
    builder = builder_class(data_dir=data_dir)
    _prepare(builder.name, builder, data_dir)
    source = builder.as_data_source(split="train")
    records = source.__getitems__(list(range(len(source))))
    images = np.stack([record["image"] for record in records])
    labels = np.array([record["label"] for record in records])
    rows = np.array([record["mnist5k_index"] for record in records])
    return images, labels, rows


@pytest.fixture(scope="module")
def csv():
    return read_mnist5k_csv()


@pytest.fixture(scope="module")
def source(data_dir):
    return built_records(Mnist5kSource, data_dir)


@pytest.fixture(scope="module")
def target(data_dir):
    return built_records(Mnist5kTarget, data_dir)


@pytest.fixture(scope="module")
def rotated(data_dir):
    return built_records(Mnist5kRotated, data_dir)


@pytest.fixture(scope="module")
def noise(data_dir):
    return built_records(Mnist5kNoise, data_dir)


def _row_set(images):
    return {image.tobytes() for image in images}


# Source and target halves


def test_halves_disjoint_rows(source, target):
    assert np.intersect1d(source[2], target[2]).size == 0


def test_halves_cover_mnist5k(source, target):
    rows = np.sort(np.concatenate([source[2], target[2]]))
    assert np.array_equal(rows, np.arange(5000))


def test_halves_disjoint_images(source, target):
    assert not _row_set(source[0]) & _row_set(target[0])


def test_halves_images_match_csv(source, target, csv):
    images, labels = csv
    for half in (source, target):
        assert np.array_equal(half[0], images[half[2]])
        assert np.array_equal(half[1], labels[half[2]])


def test_halves_stratified(source, target):
    for half in (source, target):
        assert np.array_equal(np.bincount(half[1]), np.full(10, 250))


def test_target_test_split_inside_target(data_dir, target):
    dataset = load_dataset("mnist5k_target", data_dir=data_dir)
    target_rows = _row_set(target[0].astype(np.float32))
    assert len(dataset.test_x) == 500
    assert len(dataset.train_x) == 2000
    assert _row_set(dataset.test_x) <= target_rows
    assert not _row_set(dataset.test_x) & _row_set(dataset.train_x)


# Rotated and noise variants


def test_rotated_from_target_half(rotated, target):
    assert np.array_equal(rotated[2], target[2])
    assert np.array_equal(rotated[1], target[1])


def test_rotated_changes_images(rotated, target):
    changed = np.any(rotated[0] != target[0], axis=(1, 2, 3))
    # Angles are uniform in [0, 2 pi), so almost no image stays unchanged.
    assert changed.mean() > 0.99


def test_rotated_keeps_ink(rotated, target):
    # Bilinear rotation blurs strokes but roughly keeps the total intensity,
    # apart from ink near the corners that a rotation moves out of the frame.
    ratio = rotated[0].sum(axis=(1, 2, 3)) / target[0].sum(axis=(1, 2, 3))
    assert 0.9 < np.median(ratio) < 1.05


def test_noise_from_target_half(noise, target):
    assert np.array_equal(noise[2], target[2])
    assert np.array_equal(noise[1], target[1])


def test_noise_keeps_strokes(noise, target):
    strokes = target[0] > 0
    assert np.all(noise[0][strokes] >= target[0][strokes])


def test_noise_background_uniform(noise, target):
    background = noise[0][target[0] == 0].astype(np.float64)
    assert abs(background.mean() - 127.5) < 1.0
    assert background.min() == 0
    assert background.max() == 255


def test_variants_deterministic(rotated, noise, tmp_path):
    again = str(tmp_path / "again")
    for first, builder_class in ((rotated, Mnist5kRotated), (noise, Mnist5kNoise)):
        second = built_records(builder_class, again)
        assert np.array_equal(first[0], second[0])
        assert np.array_equal(first[2], second[2])


# The 8x8 variant


def test_8x8_has_digits_format(data_dir):
    digits = load_dataset("digits", data_dir=data_dir)
    small = load_dataset("mnist5k_8x8", data_dir=data_dir)
    both = np.concatenate([small.train_x, small.test_x])
    assert small.input_shape == digits.input_shape
    assert both.min() == 0
    assert both.max() == 16
    assert np.array_equal(both, np.rint(both))
    assert len(both) == 5000


def test_8x8_feature_matches_digits(data_dir):
    feature = Mnist5k8x8(data_dir=data_dir).info.features["image"]
    expected = Digits(data_dir=data_dir).info.features["image"]
    assert feature.shape == expected.shape
    assert feature.np_dtype == expected.np_dtype


def test_8x8_ink_like_digits(data_dir):
    # Both datasets count set pixels of 32x32 bitmaps, so about half of the
    # 8x8 values are nonzero in each (0.51 for digits).
    digits = load_dataset("digits", data_dir=data_dir)
    small = load_dataset("mnist5k_8x8", data_dir=data_dir)
    digits_share = np.mean(digits.train_x > 0)
    small_share = np.mean(small.train_x > 0)
    assert abs(small_share - digits_share) < 0.1


# A tiny export with standard scaling and stored code statistics


@pytest.fixture(scope="module")
def tiny_export(data_dir, tmp_path_factory):
    config = config_lib.build_config(
        lambda: pretrain_defaults("ae"),
        overrides={
            "hidden": (12,),
            "epochs": 2,
            "scaling": "standard",
            "data_dir": data_dir,
        },
    )
    return pretrain_run("ae", config, str(tmp_path_factory.mktemp("tiny_ae")))


@pytest.fixture
def export_without_stats(tiny_export, tmp_path):
    path = str(tmp_path / "encoder")
    shutil.copytree(tiny_export, path)
    os.remove(os.path.join(path, CODE_STATS_FILE))
    return path


def test_code_stats_match_test_codes(tiny_export, data_dir):
    stored = read_code_stats(tiny_export)
    loaded = load_encoder(tiny_export)
    dataset = load_dataset("digits", data_dir=data_dir)
    codes = encode(loaded.module, loaded.scaler.apply(dataset.test_x))
    assert stored["count"] == len(dataset.test_x)
    assert stored["split"] == "test"
    assert stored["dataset"] == "digits"
    np.testing.assert_allclose(stored["mean"], codes.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(stored["std"], codes.std(axis=0), rtol=1e-5)


def test_trained_encoder_not_called_collapsed(tiny_export):
    assert collapse_message(read_code_stats(tiny_export)) is None


def test_nearly_constant_codes_called_collapsed():
    rng = np.random.default_rng(0)
    codes = 0.3 + 1e-6 * rng.standard_normal((100, 8))
    message = collapse_message(code_statistics(codes))
    assert "nearly constant" in message
    assert "lower --config.learning_rate" in message
    assert "weight" not in message


def test_pretrain_warns_of_collapsed_codes(data_dir, tmp_path, caplog):
    # A contraction 1000 times the default at a high rate flattens every code.
    config = config_lib.build_config(
        lambda: pretrain_defaults("contractive_ae"),
        overrides={
            "hidden": (12,),
            "epochs": 2,
            "contractive_weight": 100.0,
            "learning_rate": 0.3,
            "data_dir": data_dir,
        },
    )
    with caplog.at_level(logging.WARNING, logger="pretrain.run"):
        export_dir = pretrain_run("contractive_ae", config, str(tmp_path / "run"))
    assert "nearly constant" in caplog.text
    assert "--config.contractive_weight or --config.learning_rate" in caplog.text
    assert collapse_message(read_code_stats(export_dir)) is not None


def test_export_without_stats_loads(export_without_stats):
    loaded = load_encoder(export_without_stats)
    assert loaded.module.features == 12
    assert read_code_stats(export_without_stats) is None


def test_broken_code_stats_rejected(export_without_stats):
    path = os.path.join(export_without_stats, CODE_STATS_FILE)
    with open(path, "w") as f:
        json.dump({"mean": [0.0]}, f)
    with pytest.raises(ExportError, match="must hold a JSON object with keys"):
        read_code_stats(export_without_stats)


def test_empty_code_stats_named_as_no_keys(export_without_stats):
    path = os.path.join(export_without_stats, CODE_STATS_FILE)
    with open(path, "w") as f:
        json.dump({}, f)
    with pytest.raises(ExportError, match=r"got keys \[\];"):
        read_code_stats(export_without_stats)
    os.remove(path)


def test_shift_zero_for_same_stats():
    stats = code_statistics(np.random.default_rng(0).normal(size=(50, 4)))
    assert standardized_shift(stats, stats) == 0.0


def test_shift_one_std():
    codes = np.random.default_rng(0).normal(size=(400, 3))
    shift = standardized_shift(code_statistics(codes), code_statistics(codes + 1.0))
    assert shift == pytest.approx(1.0 / codes.std(axis=0).mean(), rel=0.05)


def test_shift_dead_unit_adds_zero():
    reference = {"mean": np.array([0.0, 1.0]), "std": np.array([0.0, 1.0])}
    target = {"mean": np.array([0.0, 2.0]), "std": np.array([0.0, 1.0])}
    assert standardized_shift(reference, target) == pytest.approx(0.5)


def test_shift_feature_mismatch():
    reference = {"mean": np.zeros(3), "std": np.ones(3)}
    target = {"mean": np.zeros(4), "std": np.ones(4)}
    with pytest.raises(ValueError, match="different encoders"):
        standardized_shift(reference, target)


# The auto rule


def choose(labels, shift):
    return auto.choose_preset(labels, shift, few_labels=100, threshold=0.2)[0]


def test_rule_few_similar():
    assert choose(50, 0.1) == "linear_probe"


def test_rule_few_different():
    assert choose(50, 0.5) == "gradual"


def test_rule_many_similar():
    assert choose(500, 0.1) == "gradual"


def test_rule_many_different():
    assert choose(500, 0.5) == "gradual"


def test_rule_boundaries():
    assert choose(100, 0.1) == "gradual"  # 100 labels are not fewer than 100
    assert choose(50, 0.2) == "linear_probe"  # a shift at the threshold is similar


def test_rule_without_shift():
    assert choose(50, None) == "linear_probe"
    assert choose(500, None) == "gradual"


def test_rule_reason_names_facts():
    _, reason = auto.choose_preset(500, 0.5, few_labels=100, threshold=0.2)
    assert "500 labels >= auto_few_labels 100" in reason
    assert "code shift 0.500 > auto_similarity_threshold 0.2" in reason


# Fine-tuning config


def finetune_config(export, data_dir, **overrides):
    values = {
        "encoder": export,
        "data_dir": data_dir,
        "labels": "20",
        "epochs_head": 2,
        "epochs_finetune": 1,
        "patience": 2,
        **overrides,
    }
    return config_lib.build_config(finetune_defaults, overrides=values)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("scaling", "fresh"),
        ("preset", "automatic"),
        ("auto_few_labels", 0),
        ("auto_similarity_threshold", 0.0),
    ],
)
def test_config_rejects_bad_value(key, value):
    config = finetune_config("some/encoder", "", **{key: value})
    with pytest.raises(ConfigError, match=key):
        check_config(config)


def test_target_scaler_refit(tiny_export, data_dir):
    exported = load_encoder(tiny_export).scaler
    pool = load_dataset("mnist5k_8x8", data_dir=data_dir).train_x
    config = finetune_config(tiny_export, data_dir, scaling="refit")
    refitted = target_scaler(config, exported, pool)
    expected = fit_scaler(pool, "standard")
    assert refitted.kind == "standard"
    np.testing.assert_array_equal(refitted.params["mean"], expected.params["mean"])
    assert not np.allclose(refitted.params["mean"], exported.params["mean"])


def test_target_scaler_export_default(tiny_export, data_dir):
    exported = load_encoder(tiny_export).scaler
    config = finetune_config(tiny_export, data_dir)
    assert target_scaler(config, exported, np.zeros((3, 8, 8, 1))) is exported


def test_auto_falls_back_without_stats(export_without_stats, data_dir, caplog):
    config = finetune_config(export_without_stats, data_dir, preset="auto")
    loaded = load_encoder(export_without_stats)
    pool = np.zeros((10, 8, 8, 1), np.float32)
    with caplog.at_level(logging.WARNING, logger="finetune.auto"):
        choice = auto.choose_for_run(config, loaded, pool, labels=20)
    assert choice.code_shift is None
    assert choice.preset == "linear_probe"
    assert "label count alone" in caplog.text


def test_auto_rejects_mismatched_stats(export_without_stats, data_dir):
    path = os.path.join(export_without_stats, CODE_STATS_FILE)
    stats = {"count": 3, "mean": np.zeros(5), "std": np.ones(5)}
    save_code_stats(export_without_stats, stats, dataset="digits", split="test")
    assert os.path.isfile(path)
    config = finetune_config(export_without_stats, data_dir, preset="auto")
    loaded = load_encoder(export_without_stats)
    pool = np.zeros((10, 8, 8, 1), np.float32)
    with pytest.raises(ExportError, match="does not match its encoder"):
        auto.choose_for_run(config, loaded, pool, labels=20)


def test_auto_warns_of_a_far_shift(tiny_export, data_dir, caplog):
    config = finetune_config(
        tiny_export, data_dir, preset="auto", auto_similarity_threshold=1e-9
    )
    loaded = load_encoder(tiny_export)
    pool = load_dataset("mnist5k_8x8", data_dir=data_dir).train_x[:50]
    with caplog.at_level(logging.WARNING, logger="finetune.auto"):
        choice = auto.choose_for_run(config, loaded, loaded.scaler.apply(pool), 20)
    assert choice.code_shift > 0
    assert "no better than scratch" in caplog.text


# End to end


@pytest.fixture(scope="module")
def auto_metrics(tiny_export, data_dir, tmp_path_factory):
    config = finetune_config(tiny_export, data_dir, preset="auto")
    return finetune_run(config, str(tmp_path_factory.mktemp("auto")))


@pytest.fixture(scope="module")
def refit_run(tiny_export, data_dir, tmp_path_factory):
    # 20 labels are not fewer than auto_few_labels 10, and the tiny threshold
    # makes any shift count as different, so auto chooses gradual.
    config = finetune_config(
        tiny_export,
        data_dir,
        dataset="mnist5k_8x8",
        scaling="refit",
        preset="auto",
        auto_few_labels=10,
        auto_similarity_threshold=1e-9,
    )
    workdir = str(tmp_path_factory.mktemp("refit"))
    return workdir, finetune_run(config, workdir)


def test_auto_run_records_choice(auto_metrics):
    assert auto_metrics["requested_preset"] == "auto"
    assert auto_metrics["preset"] == "linear_probe"
    assert auto_metrics["auto"]["preset"] == "linear_probe"
    assert auto_metrics["auto"]["labels"] == 20


def test_auto_run_records_shift(auto_metrics):
    shift = auto_metrics["auto"]["code_shift"]
    # The export stored the test split's statistics, and this target is the
    # training pool of the same dataset.
    assert 0 <= shift < auto_metrics["auto"]["threshold"]


def test_auto_run_trains_chosen_preset(auto_metrics):
    assert [stage["stage"] for stage in auto_metrics["stages"]] == ["head"]


def test_default_scaling_recorded(auto_metrics):
    assert auto_metrics["scaling"] == "export"


def test_refit_recorded(refit_run):
    _, metrics = refit_run
    assert metrics["scaling"] == "refit"


def test_refit_model_scaler_changed(refit_run, tiny_export):
    workdir, _ = refit_run
    with open(os.path.join(workdir, "model", "model.json")) as f:
        model_scaling = json.load(f)["scaling"]
    exported = load_encoder(tiny_export).scaler.to_dict()
    assert model_scaling["kind"] == "standard"
    assert model_scaling["params"]["mean"] != exported["params"]["mean"]


def test_auto_many_different_gradual(refit_run):
    _, metrics = refit_run
    assert metrics["preset"] == "gradual"
    assert metrics["auto"]["code_shift"] > 1e-9
    stages = [stage["stage"] for stage in metrics["stages"]]
    assert stages[0] == "head"
    assert len(stages) >= 2
    assert "full" not in stages
