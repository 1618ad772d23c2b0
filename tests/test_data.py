"""Tests for pretrain.data: TFDS loading, label budgets and input scaling.

Nothing here downloads: the embedded datasets prepare from installed package
files, and TFDS catalog loading runs under tfds.testing.mock_data or against a
test builder that generates its own examples.
"""

import importlib.util
import json
import os
import re
import shutil

import numpy as np
import PIL.Image
import pytest
import tensorflow_datasets as tfds
from sklearn.datasets import load_digits

from pretrain.data import (
    EMBEDDED_DATASETS,
    DatasetError,
    LabelSplit,
    Scaler,
    default_data_dir,
    fit_scaler,
    label_split,
    load_dataset,
    parse_budget,
)
from pretrain.data.builders import Digits, read_mnist5k_csv
from pretrain.data.loading import _validate_examples
from pretrain.data.variants import (
    noise_background,
    rotate_digits,
    source_target_split,
    to_digits_format,
)


class PretrainTinyTrainTest(tfds.core.GeneratorBasedBuilder):
    """Catalog-style builder with train and test splits and 2-D (H, W) images."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        features = tfds.features.FeaturesDict(
            {
                "image": tfds.features.Tensor(shape=(4, 5), dtype=np.uint8),
                "label": tfds.features.ClassLabel(num_classes=3),
            }
        )
        return tfds.core.DatasetInfo(
            builder=self, features=features, supervised_keys=("image", "label")
        )

    def _split_generators(self, dl_manager):
        return {
            "train": self._generate_examples(30, value=1),
            "test": self._generate_examples(9, value=2),
        }

    def _generate_examples(self, count, value):
        for index in range(count):
            image = np.full((4, 5), value, dtype=np.uint8)
            yield index, {"image": image, "label": index % 3}


class PretrainVariableSize(tfds.core.GeneratorBasedBuilder):
    """Catalog-style builder whose images have no fixed height."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        features = tfds.features.FeaturesDict(
            {
                "image": tfds.features.Tensor(shape=(None, 5), dtype=np.uint8),
                "label": tfds.features.ClassLabel(num_classes=3),
            }
        )
        return tfds.core.DatasetInfo(
            builder=self, features=features, supervised_keys=("image", "label")
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for index in range(6):
            image = np.zeros((index + 1, 5), dtype=np.uint8)
            yield index, {"image": image, "label": index % 3}


class PretrainPngImages(tfds.core.GeneratorBasedBuilder):
    """Catalog-style builder with PNG-encoded tfds.features.Image images.

    It yields PIL images, which TFDS encodes with PIL, so preparing it needs no
    TensorFlow. Reading decodes the PNGs as a prepared catalog dataset would.
    """

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        features = tfds.features.FeaturesDict(
            {
                "image": tfds.features.Image(shape=(4, 5, 1), dtype=np.uint8),
                "label": tfds.features.ClassLabel(num_classes=2),
            }
        )
        return tfds.core.DatasetInfo(
            builder=self, features=features, supervised_keys=("image", "label")
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for index in range(10):
            pixels = np.full((4, 5), 20 * index, dtype=np.uint8)
            yield index, {"image": PIL.Image.fromarray(pixels), "label": index % 2}


class PretrainNumpyImages(PretrainPngImages):
    """Like PretrainPngImages, but yields numpy images as the MNIST builder does."""

    def _generate_examples(self):
        for index in range(10):
            image = np.full((4, 5, 1), index, dtype=np.uint8)
            yield index, {"image": image, "label": index % 2}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds_data"))


@pytest.fixture(scope="module")
def digits(data_dir):
    return load_dataset("digits", data_dir=data_dir)


@pytest.fixture(scope="module")
def mnist5k(data_dir):
    return load_dataset("mnist5k", data_dir=data_dir)


def _sorted_rows(x):
    rows = x.reshape(len(x), -1)
    return rows[np.lexsort(rows.T[::-1])]


# load_dataset: embedded datasets


def test_digits_counts(digits):
    assert len(digits.train_x) + len(digits.test_x) == 1797
    assert len(digits.train_y) == len(digits.train_x)
    assert len(digits.test_y) == len(digits.test_x)
    # sklearn's train_test_split rounds the test size up: ceil(0.2 * 1797).
    assert len(digits.test_x) == 360


def test_digits_shape_and_range(digits):
    assert digits.input_shape == (8, 8, 1)
    assert digits.train_x.dtype == np.float32
    assert digits.train_y.dtype == np.int32
    assert digits.train_x.min() == 0
    assert digits.train_x.max() == 16
    assert digits.num_classes == 10


def test_digits_pool_and_test_partition(digits):
    # The pool and the test set together are the sklearn images, each once, so
    # they are disjoint.
    both = np.concatenate([digits.train_x, digits.test_x])
    expected = load_digits().images.astype(np.float32)[..., np.newaxis]
    assert np.array_equal(_sorted_rows(both), _sorted_rows(expected))


def test_digits_records_in_source_order(digits, data_dir):
    source = Digits(data_dir=data_dir).as_data_source(split="train")
    expected = load_digits()
    records = source.__getitems__([0, 1, 1796])
    for record, index in zip(records, [0, 1, 1796], strict=True):
        assert np.array_equal(record["image"][..., 0], expected.images[index])
        assert record["label"] == expected.target[index]


def test_digits_test_split_stratified(digits):
    counts = np.bincount(digits.test_y, minlength=10)
    totals = np.bincount(np.concatenate([digits.train_y, digits.test_y]))
    assert np.all(np.abs(counts - 0.2 * totals) <= 1)


def test_digits_test_fixed_per_seed(digits, data_dir):
    again = load_dataset("digits", data_dir=data_dir)
    other = load_dataset("digits", data_dir=data_dir, split_seed=1)
    assert np.array_equal(again.test_x, digits.test_x)
    assert np.array_equal(again.test_y, digits.test_y)
    assert other.split_seed == 1
    assert not np.array_equal(other.test_x, digits.test_x)


def test_mnist5k_loads(mnist5k):
    labels = np.concatenate([mnist5k.train_y, mnist5k.test_y])
    assert len(labels) == 5000
    assert mnist5k.input_shape == (28, 28, 1)
    assert np.array_equal(np.bincount(labels), np.full(10, 500))
    assert mnist5k.train_x.max() == 255


def test_mnist5k_matches_csv(mnist5k):
    images, _ = read_mnist5k_csv()
    both = np.concatenate([mnist5k.train_x, mnist5k.test_x])
    assert np.array_equal(_sorted_rows(both), _sorted_rows(images.astype(np.float32)))


# load_dataset: TFDS catalog names


def test_catalog_mnist_mocked(tmp_path):
    def fake_source(builder, split, **kwargs):
        # tfds.testing.mock_data's own data source fails on __getitems__ in
        # TFDS 4.9.10, so this test supplies a plain list of examples.
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, size=(100, 28, 28, 1), dtype=np.uint8)
        return [{"image": image, "label": i % 10} for i, image in enumerate(images)]

    with tfds.testing.mock_data(num_examples=100, as_data_source_fn=fake_source):
        ds = load_dataset("mnist", data_dir=str(tmp_path))
    assert ds.input_shape == (28, 28, 1)
    assert ds.num_classes == 10
    assert len(ds.train_x) == 80
    assert len(ds.test_x) == 20
    assert list(tmp_path.iterdir()) == []


def test_catalog_uses_test_split(tmp_path):
    ds = load_dataset("pretrain_tiny_train_test", data_dir=str(tmp_path))
    other = load_dataset(
        "pretrain_tiny_train_test", data_dir=str(tmp_path), split_seed=5
    )
    assert ds.input_shape == (4, 5, 1)
    assert len(ds.train_x) == 30
    assert len(ds.test_x) == 9
    assert np.all(ds.train_x == 1)
    assert np.all(ds.test_x == 2)
    assert np.array_equal(other.test_x, ds.test_x)


def test_catalog_variable_size_rejected(tmp_path):
    with pytest.raises(DatasetError, match=r"shape \(None, 5\)"):
        load_dataset("pretrain_variable_size", data_dir=str(tmp_path))
    # The shape check runs before preparation, so nothing was written.
    assert list(tmp_path.iterdir()) == []


def test_catalog_png_images_decoded(tmp_path):
    ds = load_dataset("pretrain_png_images", data_dir=str(tmp_path))
    pixels = np.concatenate([ds.train_x, ds.test_x])[:, 0, 0, 0]
    assert ds.input_shape == (4, 5, 1)
    assert sorted(pixels.tolist()) == [20.0 * i for i in range(10)]


def test_catalog_prepare_needs_tensorflow(tmp_path):
    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("TensorFlow is installed, so TFDS can encode numpy images")
    with pytest.raises(DatasetError, match="needs TensorFlow"):
        load_dataset("pretrain_numpy_images", data_dir=str(tmp_path))


def test_unknown_name_message(data_dir):
    with pytest.raises(DatasetError) as info:
        load_dataset("digts", data_dir=data_dir)
    message = str(info.value)
    assert "Did you mean 'digits'" in message
    for name in EMBEDDED_DATASETS:
        assert repr(name) in message
    assert "TFDS catalog name" in message


def test_load_rejects_bad_arguments(data_dir):
    with pytest.raises(DatasetError, match="test_fraction 1.5"):
        load_dataset("digits", data_dir=data_dir, test_fraction=1.5)
    with pytest.raises(DatasetError, match="split_seed -1"):
        load_dataset("digits", data_dir=data_dir, split_seed=-1)


def test_default_data_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    assert default_data_dir() == str(tmp_path)


# Array validation


def test_validate_rejects_nan():
    images = np.zeros((4, 2, 2, 1), dtype=np.float32)
    images[1, 0, 0, 0] = np.nan
    images[2, 1, 1, 0] = np.inf
    labels = np.array([0, 1, 0, 1])
    with pytest.raises(DatasetError, match="'toy' .* contains 2 non-finite"):
        _validate_examples("toy", images, labels, 2)


def test_validate_rejects_bad_label():
    images = np.zeros((3, 2, 2, 1), dtype=np.float32)
    with pytest.raises(DatasetError, match="label 7 outside"):
        _validate_examples("toy", images, np.array([0, 7, 1]), 2)


def test_validate_rejects_one_class():
    images = np.zeros((3, 2, 2, 1), dtype=np.float32)
    with pytest.raises(DatasetError, match="at least 2"):
        _validate_examples("toy", images, np.zeros(3, dtype=np.int64), 1)


# Label budgets


def _balanced_labels(per_class=50, num_classes=10):
    return np.repeat(np.arange(num_classes), per_class)


def test_parse_budget_values():
    assert parse_budget("all") is None
    assert parse_budget(" ALL ") is None
    assert parse_budget("100") == 100
    assert parse_budget(100) == 100
    for bad in ("abc", "0", "-5", "1.5", "", True, 2.0):
        with pytest.raises(DatasetError, match="invalid label budget"):
            parse_budget(bad)


def test_split_sizes_multiple():
    labels = _balanced_labels()
    split = label_split(labels, 100, 10, seed=0)
    assert np.array_equal(np.bincount(labels[split.train_idx]), np.full(10, 10))
    assert np.array_equal(np.bincount(labels[split.val_idx]), np.full(10, 2))
    assert split.train_idx.dtype == np.int64
    assert np.all(np.diff(split.train_idx) > 0)


def test_split_sizes_remainder():
    labels = _balanced_labels()
    split = label_split(labels, 25, 10, seed=0)
    train_counts = np.bincount(labels[split.train_idx], minlength=10)
    assert len(split.train_idx) == 25
    assert set(train_counts.tolist()) == {2, 3}
    assert np.count_nonzero(train_counts == 3) == 5
    # max(25 // 5, 10) = 10 validation labels, one per class.
    assert np.array_equal(np.bincount(labels[split.val_idx]), np.ones(10))


def test_split_disjoint():
    split = label_split(_balanced_labels(), 100, 10, seed=3)
    assert np.intersect1d(split.train_idx, split.val_idx).size == 0


def test_split_deterministic():
    labels = _balanced_labels()
    first = label_split(labels, 25, 10, seed=7)
    second = label_split(labels, 25, 10, seed=7)
    other = label_split(labels, 25, 10, seed=8)
    assert np.array_equal(first.train_idx, second.train_idx)
    assert np.array_equal(first.val_idx, second.val_idx)
    assert not np.array_equal(first.train_idx, other.train_idx)


def test_split_small_class_error():
    # Class 3 has 2 examples, enough for one training and one validation label.
    others = np.repeat(np.delete(np.arange(10), 3), 50)
    labels = np.concatenate([others, [3, 3]])
    with pytest.raises(
        DatasetError, match=r"budget 100 .* \[10, 10\] .* class 3, .* \(2\)"
    ):
        label_split(labels, 100, 10, seed=0)
    assert len(label_split(labels, 10, 10, seed=0).train_idx) == 10


def test_split_class_too_small_for_any():
    labels = np.concatenate([np.repeat(np.arange(1, 10), 50), [0]])
    with pytest.raises(
        DatasetError, match=r"class 0 has too few examples in the pool \(1\)"
    ):
        label_split(labels, 10, 10, seed=0)


def _upper_bound_in_hint(labels, num_classes):
    with pytest.raises(DatasetError, match="so the validation set also fits") as err:
        label_split(labels, 10**6, num_classes, seed=0)
    return int(re.search(r"in \[\d+, (\d+)\]", str(err.value)).group(1))


def test_split_hint_bound_unbalanced():
    # Class 9 has 30 examples, so the largest class share of training plus
    # validation labels is at most 30: 250 + 250 // 5 = 300 = 10 * 30.
    labels = np.concatenate([np.repeat(np.arange(9), 50), np.full(30, 9)])
    bound = _upper_bound_in_hint(labels, 10)
    assert bound == 250
    for seed in range(5):
        assert len(label_split(labels, bound, 10, seed=seed).train_idx) == bound
    with pytest.raises(DatasetError, match=r"budget 251 .* \[10, 250\]"):
        label_split(labels, 251, 10, seed=0)


def test_split_hint_bound_digits(digits):
    bound = _upper_bound_in_hint(digits.train_y, digits.num_classes)
    for seed in range(5):
        split = label_split(digits.train_y, bound, digits.num_classes, seed=seed)
        assert len(split.train_idx) == bound
    for seed in range(5):
        with pytest.raises(DatasetError, match=rf"budget {bound + 1} .* {bound}\]"):
            label_split(digits.train_y, bound + 1, digits.num_classes, seed=seed)
    # "all" draws validation in proportion to the class frequencies instead, so
    # it keeps more training labels than the largest budget.
    n = len(digits.train_y)
    split = label_split(digits.train_y, None, digits.num_classes, seed=0)
    assert len(split.train_idx) == n - round(n / 6)
    assert len(split.train_idx) > bound


def test_split_budget_too_small():
    with pytest.raises(DatasetError, match=r"budget 5 .* \[10, 417\]"):
        label_split(_balanced_labels(), 5, 10, seed=0)


def test_split_budget_too_large():
    labels = _balanced_labels()
    # 417 + 417 // 5 = 500 fills the pool exactly, so 418 is one too many.
    assert len(label_split(labels, 417, 10, seed=0).train_idx) == 417
    with pytest.raises(DatasetError, match=r"budget 418 .* \[10, 417\]"):
        label_split(labels, 418, 10, seed=0)


def test_split_all_budget():
    labels = _balanced_labels()
    split = label_split(labels, None, 10, seed=0)
    assert split.budget is None
    assert len(split.val_idx) == round(500 / 6)
    assert len(split.train_idx) == 500 - round(500 / 6)
    assert np.intersect1d(split.train_idx, split.val_idx).size == 0
    assert np.all(np.bincount(labels[split.val_idx], minlength=10) >= 8)


def test_split_dict_round_trip():
    split = label_split(_balanced_labels(), 25, 10, seed=1)
    restored = LabelSplit.from_dict(json.loads(json.dumps(split.to_dict())))
    assert np.array_equal(restored.train_idx, split.train_idx)
    assert np.array_equal(restored.val_idx, split.val_idx)
    assert restored.train_idx.dtype == np.int64
    assert restored.budget == 25
    assert restored.seed == 1


def test_split_dict_extra_key():
    d = label_split(_balanced_labels(), 25, 10, seed=1).to_dict()
    d["note"] = "x"
    with pytest.raises(DatasetError, match="unknown keys \\['note'\\]"):
        LabelSplit.from_dict(d)


# Scaling


def test_minmax_range_on_pool(digits):
    scaled = fit_scaler(digits.train_x).apply(digits.train_x)
    assert scaled.dtype == np.float32
    assert scaled.min() == 0.0
    assert scaled.max() == 1.0


@pytest.mark.parametrize("kind", ["minmax", "standard"])
def test_scaler_round_trip(digits, kind):
    scaler = fit_scaler(digits.train_x, kind)
    restored = Scaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    assert restored.kind == kind
    assert restored.feature_shape == (8, 8, 1)
    for key, value in scaler.params.items():
        assert np.array_equal(restored.params[key], value)
    assert np.array_equal(restored.apply(digits.test_x), scaler.apply(digits.test_x))


def test_standard_constant_pixel_std_one(digits):
    scaler = fit_scaler(digits.train_x, "standard")
    assert scaler.params["std"].shape == (8, 8, 1)
    # Pixel (0, 0) is 0 in every sklearn digit, so it keeps its raw units.
    assert scaler.params["std"][0, 0, 0] == 1.0
    assert np.allclose(scaler.apply(digits.train_x).mean(axis=0), 0, atol=1e-4)


def test_scaler_shape_mismatch(digits):
    scaler = fit_scaler(digits.train_x)
    with pytest.raises(DatasetError, match=r"\(8, 8, 1\) .* \(3, 28, 28, 1\)"):
        scaler.apply(np.zeros((3, 28, 28, 1), dtype=np.float32))


def test_scaler_dict_extra_key(digits):
    d = fit_scaler(digits.train_x).to_dict()
    d["offset"] = 1.0
    with pytest.raises(DatasetError, match="unknown keys \\['offset'\\]"):
        Scaler.from_dict(d)


def test_scaler_dict_bad_params(digits):
    d = fit_scaler(digits.train_x).to_dict()
    del d["params"]["max"]
    with pytest.raises(DatasetError, match="missing keys \\['max'\\]"):
        Scaler.from_dict(d)
    d = fit_scaler(digits.train_x).to_dict()
    d["kind"] = "robust"
    with pytest.raises(DatasetError, match="unknown scaler kind 'robust'"):
        Scaler.from_dict(d)


def test_minmax_constant_error():
    with pytest.raises(DatasetError, match="constant data"):
        fit_scaler(np.full((5, 2, 2, 1), 3.0, dtype=np.float32))


# Transfer variants of mnist5k (pretrain.data.variants)


def test_digits_format_full_and_empty():
    images = np.zeros((2, 28, 28, 1), dtype=np.uint8)
    images[1] = 255
    small = to_digits_format(images)
    assert small.shape == (2, 8, 8, 1)
    assert small.dtype == np.uint8
    assert np.all(small[0] == 0)
    assert np.all(small[1] == 16)


def test_digits_format_ignores_border():
    # Only the central 20x20 digit box is converted, so ink in the 4-pixel
    # border of a 28x28 MNIST frame is cropped off.
    images = np.zeros((1, 28, 28, 1), dtype=np.uint8)
    images[0, :4] = 255
    assert np.all(to_digits_format(images) == 0)


def test_noise_background_keeps_strokes():
    images = np.zeros((3, 28, 28, 1), dtype=np.uint8)
    images[:, 10:18, 12:16] = 255
    noisy = noise_background(images)
    assert np.all(noisy[:, 10:18, 12:16] == 255)
    assert np.array_equal(noisy, noise_background(images))
    assert noisy[:, :10].std() > 50


def test_rotation_keeps_centre():
    # The square is centred on the rotation centre (13.5, 13.5), so whatever
    # the angle its inner pixels keep their value and the corners stay empty.
    images = np.zeros((4, 28, 28, 1), dtype=np.uint8)
    images[:, 10:18, 10:18] = 200
    rotated = rotate_digits(images)
    assert np.all(rotated[:, 13:15, 13:15] == 200)
    assert np.all(rotated[:, :4, :4] == 0)


def test_source_target_halves_partition():
    labels = np.repeat(np.arange(10), 20)
    source, target = source_target_split(labels)
    assert np.intersect1d(source, target).size == 0
    assert np.array_equal(np.sort(np.concatenate([source, target])), np.arange(200))
    assert np.array_equal(np.bincount(labels[target]), np.full(10, 10))


@pytest.mark.parametrize("damage", ["truncate records", "remove records", "info"])
def test_damaged_prepared_files_named(data_dir, tmp_path, damage):
    load_dataset("digits", data_dir=data_dir)
    copy = tmp_path / "tfds"
    shutil.copytree(os.path.join(data_dir, "digits"), copy / "digits")
    version = next((copy / "digits").iterdir())
    records = next(version.glob("digits-train.array_record*"))
    if damage == "truncate records":
        records.write_bytes(records.read_bytes()[: records.stat().st_size // 2])
    elif damage == "remove records":
        records.unlink()
    else:
        info = version / "dataset_info.json"
        info.write_text(info.read_text()[:100])

    with pytest.raises(DatasetError, match="damaged. Delete .*digits"):
        load_dataset("digits", data_dir=str(copy))
