"""The encoder export: round trip, strict loading and broken directories."""

import json
import os
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file

from pretrain.export import (
    FORMAT_VERSION,
    ExportError,
    flat_state,
    load_encoder,
    save_safetensors,
    write_weights_dir,
)


@pytest.fixture
def export_copy(ae_export, tmp_path):
    path = str(tmp_path / "encoder")
    shutil.copytree(ae_export, path)
    return path


def edit_metadata(path, change):
    file = os.path.join(path, "encoder.json")
    with open(file) as f:
        metadata = json.load(f)
    change(metadata)
    with open(file, "w") as f:
        json.dump(metadata, f)


def test_round_trip_outputs_match(ae_export):
    first, second = load_encoder(ae_export), load_encoder(ae_export)
    x = np.random.default_rng(0).uniform(size=(5, 8, 8, 1)).astype(np.float32)
    np.testing.assert_array_equal(first.module(x), second.module(x))
    assert first.module(x).shape == (5, 16)


def test_metadata_records_run(ae_export):
    loaded = load_encoder(ae_export)
    assert loaded.metadata["format_version"] == FORMAT_VERSION
    assert loaded.metadata["method"] == "ae"
    assert loaded.spec["input_shape"] == [8, 8, 1]
    assert [layer["features"] for layer in loaded.spec["layers"]] == [32, 16]
    assert loaded.metadata["provenance"]["packages"]["jax"]
    assert loaded.scaler.kind == "minmax"


def test_missing_directory(tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        load_encoder(str(tmp_path / "nope"))


def test_missing_metadata_file(export_copy):
    os.remove(os.path.join(export_copy, "encoder.json"))
    with pytest.raises(ExportError, match="encoder.json.*missing"):
        load_encoder(export_copy)


def test_truncated_metadata(export_copy):
    file = os.path.join(export_copy, "encoder.json")
    with open(file) as f:
        text = f.read()
    with open(file, "w") as f:
        f.write(text[: len(text) // 2])
    with pytest.raises(ExportError, match="not valid JSON"):
        load_encoder(export_copy)


def test_newer_format_version_rejected(export_copy):
    edit_metadata(export_copy, lambda m: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(ExportError, match=f"version {FORMAT_VERSION + 1}"):
        load_encoder(export_copy)


def test_extra_metadata_key_rejected(export_copy):
    edit_metadata(export_copy, lambda m: m.update(surprise=1))
    with pytest.raises(ExportError, match="surprise"):
        load_encoder(export_copy)


def test_missing_weights_directory(export_copy):
    shutil.rmtree(os.path.join(export_copy, "weights"))
    with pytest.raises(ExportError, match="weights.*missing"):
        load_encoder(export_copy)


def test_wrong_shape_leaf_named(export_copy):
    edit_metadata(export_copy, lambda m: m["encoder"]["layers"][1].update(features=17))
    with pytest.raises(ExportError, match=r"layers\.1\.linear\.kernel"):
        load_encoder(export_copy)


def test_huge_spec_rejected_before_allocation(export_copy):
    # Building this encoder would need terabytes; the check reads shapes only.
    edit_metadata(export_copy, lambda m: m["encoder"].update(input_shape=[10**12]))
    with pytest.raises(ExportError, match="do not match the model spec"):
        load_encoder(export_copy)


def test_missing_and_extra_leaves_named(export_copy, tmp_path):
    loaded = load_encoder(export_copy)
    weights = flat_state(loaded.module)
    weights.pop("layers.0.linear.bias")
    weights["layers.9.linear.kernel"] = np.zeros((2, 2), np.float32)
    with open(os.path.join(export_copy, "encoder.json")) as f:
        metadata = json.load(f)
    broken = str(tmp_path / "broken")
    write_weights_dir(broken, weights, "encoder.json", metadata)
    with pytest.raises(ExportError) as error:
        load_encoder(broken)
    assert "layers.0.linear.bias" in str(error.value)
    assert "layers.9.linear.kernel" in str(error.value)


def test_weights_of_other_run_rejected(export_copy, tmp_path):
    # Same architecture, other values: only the digest can tell them apart.
    weights = flat_state(load_encoder(export_copy).module)
    weights["layers.0.linear.bias"] = weights["layers.0.linear.bias"] + 1.0
    with open(os.path.join(export_copy, "encoder.json")) as f:
        metadata = json.load(f)
    other = str(tmp_path / "other")
    write_weights_dir(other, weights, "encoder.json", metadata)
    shutil.rmtree(os.path.join(export_copy, "weights"))
    shutil.copytree(
        os.path.join(other, "weights"), os.path.join(export_copy, "weights")
    )

    load_encoder(other)
    with pytest.raises(ExportError, match="do not match the weights_sha256"):
        load_encoder(export_copy)


def test_export_without_digest_loads(export_copy):
    # Exports written before the digest existed have no weights_sha256.
    edit_metadata(export_copy, lambda m: m.pop("weights_sha256"))
    loaded = load_encoder(export_copy)
    assert "weights_sha256" not in loaded.metadata


def test_corrupted_weight_file(export_copy):
    data_files = []
    for root, _, files in os.walk(os.path.join(export_copy, "weights")):
        data_files += [os.path.join(root, f) for f in files if "ocdbt" in root]
    assert data_files
    for path in data_files:
        with open(path, "r+b") as f:
            f.write(b"\xff" * 64)
    with pytest.raises(ExportError, match="corrupted"):
        load_encoder(export_copy)


def test_safetensors_matches_weights(ae_export, tmp_path):
    loaded = load_encoder(ae_export)
    path = str(tmp_path / "encoder.safetensors")
    save_safetensors(loaded, path)
    tensors = load_file(path)
    expected = flat_state(loaded.module)
    assert sorted(tensors) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(tensors[name], value)


def test_code_in_metadata_not_run(export_copy, tmp_path):
    marker = tmp_path / "ran"
    payload = f"__import__('os').system('touch {marker}')"
    edit_metadata(
        export_copy, lambda m: m["encoder"]["layers"][0].update(activation=payload)
    )
    with pytest.raises(ExportError, match="unknown activation"):
        load_encoder(export_copy)
    assert not marker.exists()


def test_weights_link_outside_rejected(export_copy, tmp_path):
    outside = tmp_path / "outside"
    shutil.move(os.path.join(export_copy, "weights"), outside)
    os.symlink(outside, os.path.join(export_copy, "weights"))
    with pytest.raises(ExportError, match="points outside"):
        load_encoder(export_copy)


def test_relative_path_loads(ae_export, monkeypatch):
    monkeypatch.chdir(os.path.dirname(ae_export))
    loaded = load_encoder(os.path.basename(ae_export))
    assert loaded.spec["input_shape"] == [8, 8, 1]
