"""The encoder export: a directory that rebuilds an encoder without its trainer.

Layout of an export directory::

    encoder.json   format version, encoder spec, input scaling, method,
                   config, seed, provenance and the SHA-256 of the weights
                   (plain JSON)
    weights/       orbax checkpoint of a flat {"layers.0.linear.kernel": array}
                   dict holding every param and batch statistic
    code_stats.json  optional: per-feature mean and std of the encoder's
                   codes on held-out pretraining inputs (see
                   pretrain.code_stats); loading ignores it

Loading is strict: the JSON keys, the format version and every weight leaf
(name, shape, dtype) are checked against the spec before anything is
restored, and the restored weights against their SHA-256. Nothing in the
load path unpickles or evaluates code.
"""

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from pretrain.data import Scaler
from pretrain.encoders import SpecError, build_encoder
from pretrain.multihost import is_primary, run_on_primary
from pretrain.workdir import directory_mode

FORMAT_VERSION = 1
METADATA_FILE = "encoder.json"
WEIGHTS_DIR = "weights"
METADATA_KEYS = {
    "format_version",
    "encoder",
    "scaling",
    "method",
    "config",
    "seed",
    "provenance",
}
# The SHA-256 of the weights, which `write_weights_dir` adds to every metadata
# file it writes. Directories written before it existed have no such key.
DIGEST_KEY = "weights_sha256"


class ExportError(ValueError):
    """An encoder export that is missing, incomplete or does not match its spec."""


@dataclass
class LoadedEncoder:
    module: nnx.Module  # the encoder with its trained params and batch statistics
    scaler: Scaler  # apply to raw inputs before calling the module
    spec: dict[str, Any]
    metadata: dict[str, Any]


def flat_state(module: nnx.Module) -> dict[str, np.ndarray]:
    """Return every variable of `module` as {"dotted.path": array}."""
    pure = nnx.to_pure_dict(nnx.state(module))
    leaves = jax.tree_util.tree_flatten_with_path(pure)[0]
    return {_dotted(path): np.asarray(value) for path, value in leaves}


def abstract_flat_state(build: Callable[[], nnx.Module]) -> dict[str, Any]:
    """Return the shape and dtype of every variable of the module that `build`
    returns, as {"dotted.path": jax.ShapeDtypeStruct}, without allocating it.

    A loader checks stored weights against these first, so that a spec with
    a corrupted size is rejected before its arrays fill the memory.
    """
    module = nnx.eval_shape(build)
    pure = nnx.to_pure_dict(nnx.state(module))
    leaves = jax.tree_util.tree_flatten_with_path(pure)[0]
    return {
        _dotted(path): jax.ShapeDtypeStruct(value.shape, value.dtype)
        for path, value in leaves
    }


def _dotted(path) -> str:
    return ".".join(str(getattr(key, "key", key)) for key in path)


def load_flat_state(module: nnx.Module, flat: Mapping[str, Any]) -> None:
    """Write the arrays of `flat` (from `flat_state`) into `module` in place."""
    state = nnx.state(module)
    pure = nnx.to_pure_dict(state)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(pure)
    values = [jnp.asarray(flat[_dotted(path)]) for path, _ in leaves]
    nnx.replace_by_pure_dict(state, jax.tree_util.tree_unflatten(treedef, values))
    nnx.update(module, state)


def save_encoder(
    directory: str,
    module: nnx.Module,
    *,
    spec: Mapping[str, Any],
    scaler: Scaler,
    method: str,
    config: Mapping[str, Any],
    seed: int,
    provenance: Mapping[str, Any],
) -> None:
    """Write an export to `directory`, replacing any previous one atomically."""
    metadata = {
        "format_version": FORMAT_VERSION,
        "encoder": dict(spec),
        "scaling": scaler.to_dict(),
        "method": method,
        "config": dict(config),
        "seed": int(seed),
        "provenance": dict(provenance),
    }
    write_weights_dir(directory, flat_state(module), METADATA_FILE, metadata)


def weights_digest(weights: Mapping[str, Any]) -> str:
    """Return the SHA-256 of `weights` ({"dotted.path": array}) as hex.

    It covers every leaf's name, dtype, shape and bytes, in name order, so
    weights of the same architecture from another run give another digest.
    """
    digest = hashlib.sha256()
    for name in sorted(weights):
        value = np.ascontiguousarray(weights[name])
        digest.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def write_weights_dir(
    directory: str,
    weights: Mapping[str, np.ndarray],
    metadata_file: str,
    metadata: Mapping[str, Any],
) -> None:
    """Write `weights/` (orbax) and a JSON metadata file, replacing `directory`.

    The metadata file gets the weights' digest under `DIGEST_KEY`, which ties
    it to these weights. Everything goes to a temporary sibling directory
    first, with the metadata file last, and is then renamed into place, so an
    interrupted save never leaves a directory that loads. In a multi-process
    run every process calls this with the same `weights` and saves them with
    orbax together, process 0 writes the rest, and every process returns once
    `directory` is in place.
    """
    metadata = {**metadata, DIGEST_KEY: weights_digest(weights)}
    directory = os.path.abspath(directory)
    parent = os.path.dirname(directory)
    # orbax needs one directory that every process saves to, and mkdtemp
    # gives each process a different name, so process 0 creates it.
    tmp = run_on_primary(lambda: _make_temporary_sibling(parent))
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            # Host numpy values: orbax (0.12.8) writes them from process 0 only.
            checkpointer.save(os.path.join(tmp, WEIGHTS_DIR), dict(weights))
            checkpointer.wait_until_finished()
        run_on_primary(lambda: _publish(tmp, directory, metadata_file, metadata))
    except BaseException:
        if is_primary():
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def _make_temporary_sibling(parent: str) -> str:
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=".export-", dir=parent)


def _publish(
    tmp: str, directory: str, metadata_file: str, metadata: Mapping[str, Any]
) -> None:
    with open(os.path.join(tmp, metadata_file), "w") as f:
        json.dump(metadata, f, indent=2)
    os.chmod(tmp, directory_mode())  # mkdtemp creates it as 0700
    if os.path.exists(directory):
        shutil.rmtree(directory)
    os.replace(tmp, directory)


def read_metadata(directory: str) -> dict[str, Any]:
    """Read and check `encoder.json` of an export."""
    # orbax finds no item metadata under a relative path (0.12.8).
    directory = os.path.abspath(directory)
    return read_json_metadata(
        directory,
        METADATA_FILE,
        keys=METADATA_KEYS,
        max_version=FORMAT_VERSION,
        kind="encoder export",
        producer="pretrain",
        where="the `encoder` directory that `pretrain` wrote",
        missing=_missing_export_message,
    )


def read_json_metadata(
    directory: str,
    filename: str,
    *,
    keys: set[str],
    max_version: int,
    kind: str,
    producer: str,
    where: str,
    missing: Callable[[str, str], str],
) -> dict[str, Any]:
    """Read `directory`/`filename`, a JSON object with exactly `keys` and an
    integer format_version of at most `max_version`.

    `kind` names what the directory is ("encoder export"), `producer` the
    command that writes it, `where` which directory to pass instead, and
    `missing(directory, path)` gives the message for a missing file.
    `DIGEST_KEY` may be there too, and is missing in older directories.
    """
    if not os.path.isdir(directory):
        found = "is a file" if os.path.exists(directory) else "does not exist"
        raise ExportError(f"no {kind} at {directory!r}: the path {found}; pass {where}")
    path = os.path.join(directory, filename)
    if not os.path.isfile(path):
        raise ExportError(missing(directory, path))
    try:
        with open(path) as f:
            metadata = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ExportError(
            f"{path!r} is not valid JSON ({error}); the {kind} is truncated or "
            f"corrupted, rerun `{producer}`"
        ) from None
    if not isinstance(metadata, dict):
        raise ExportError(f"{path!r} must contain a JSON object")

    version = metadata.get("format_version")
    if not isinstance(version, int):
        raise ExportError(f"{path!r} has no integer format_version")
    if version > max_version:
        raise ExportError(
            f"{directory!r} uses {kind} format version {version}, but this "
            f"code reads up to version {max_version}; upgrade pretrain-jax "
            f"to a release that reads format version {version}"
        )
    if set(metadata) - {DIGEST_KEY} != keys:
        missing_keys = sorted(keys - set(metadata))
        extra = sorted(set(metadata) - keys - {DIGEST_KEY})
        raise ExportError(
            f"{path!r} has missing keys {missing_keys} and unknown keys {extra}"
        )
    return metadata


def _missing_export_message(directory: str, path: str) -> str:
    if os.path.isfile(os.path.join(directory, "model.json")):
        return (
            f"{directory!r} is a fine-tuned model, not an encoder export; load "
            "it with `finetune.model.load_classifier`, or pass the `encoder` "
            "directory that `pretrain` wrote"
        )
    inner = os.path.join(directory, "encoder")
    if os.path.isfile(os.path.join(inner, METADATA_FILE)):
        return f"{directory!r} is a `pretrain` workdir; pass {inner!r}"
    return (
        f"{path!r} is missing, so {directory!r} is not a complete export; rerun "
        "`pretrain` to write it again"
    )


def load_encoder(directory: str) -> LoadedEncoder:
    """Rebuild the encoder of an export, with its weights and input scaling."""
    directory = os.path.abspath(directory)
    metadata = read_metadata(directory)

    def build():
        return build_encoder(metadata["encoder"], rngs=nnx.Rngs(0))

    try:
        expected = abstract_flat_state(build)
    except (SpecError, KeyError, TypeError, ValueError) as error:
        raise ExportError(f"invalid encoder spec in {directory!r}: {error}") from None
    try:
        scaler = Scaler.from_dict(metadata["scaling"])
    except (ValueError, KeyError, TypeError) as error:
        raise ExportError(f"invalid scaling in {directory!r}: {error}") from None

    restored = read_weights(directory, expected, metadata=metadata)
    module = build()
    load_flat_state(module, restored)
    return LoadedEncoder(module, scaler, metadata["encoder"], metadata)


def read_weights(
    directory: str,
    expected: Mapping[str, np.ndarray],
    producer: str = "pretrain",
    *,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Read `directory`/weights, checked leaf by leaf against `expected` (from
    `flat_state` or `abstract_flat_state` of the rebuilt module); errors name
    `producer` as the fix.

    Given the directory's `metadata`, the weights read must match its
    `DIGEST_KEY` where it has one.
    """
    weights = os.path.join(directory, WEIGHTS_DIR)
    # Only files inside the directory are read, even through a symlink.
    inside = os.path.realpath(directory) + os.sep
    if not os.path.realpath(weights).startswith(inside):
        raise ExportError(
            f"{weights!r} points outside {directory!r}; copy the weights into "
            "it instead of linking them"
        )
    _check_weight_leaves(weights, expected, producer)
    abstract = {
        name: jax.ShapeDtypeStruct(value.shape, value.dtype)
        for name, value in expected.items()
    }
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            restored = checkpointer.restore(weights, abstract)
    except Exception as error:  # orbax and tensorstore raise many types here
        raise ExportError(
            f"the weights in {weights!r} could not be read ({type(error).__name__}: "
            f"{str(error)[:300]}); the file is corrupted or truncated, rerun "
            f"`{producer}`"
        ) from None

    expected_digest = None if metadata is None else metadata.get(DIGEST_KEY)
    if expected_digest is not None and weights_digest(restored) != expected_digest:
        raise ExportError(
            f"the weights in {weights!r} do not match the {DIGEST_KEY} of "
            f"{directory!r}: they come from another run or were changed after "
            f"it. Keep each weights directory with its own metadata file, or "
            f"rerun `{producer}`"
        )
    return restored


def _check_weight_leaves(
    weights: str, expected: Mapping[str, np.ndarray], producer: str
) -> None:
    if not os.path.isdir(weights):
        raise ExportError(
            f"{weights!r} is missing; the directory is incomplete, rerun `{producer}`"
        )
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            on_disk = checkpointer.metadata(weights).item_metadata
    except Exception as error:  # orbax raises many types for broken metadata
        raise ExportError(
            f"the weights in {weights!r} have unreadable metadata "
            f"({type(error).__name__}); they are corrupted, rerun `{producer}`"
        ) from None
    if on_disk is None:
        raise ExportError(
            f"the weights in {weights!r} have no item metadata; they are "
            f"corrupted or incomplete, rerun `{producer}`"
        )
    found = {name: (tuple(m.shape), np.dtype(m.dtype)) for name, m in on_disk.items()}
    wanted = {name: (v.shape, v.dtype) for name, v in expected.items()}

    missing = sorted(set(wanted) - set(found))
    extra = sorted(set(found) - set(wanted))
    wrong = sorted(
        f"{name}: found {found[name]}, expected {wanted[name]}"
        for name in set(wanted) & set(found)
        if found[name] != wanted[name]
    )
    if missing or extra or wrong:
        parts = [
            f"{label} {names}"
            for label, names in (
                ("missing leaves", missing),
                ("unexpected leaves", extra),
                ("wrong shape or dtype", wrong),
            )
            if names
        ]
        raise ExportError(
            f"the weights in {weights!r} do not match the model spec ("
            + "; ".join(parts)
            + "), so they belong to another model or the spec in the metadata "
            f"file was changed; rerun `{producer}`"
        )


def save_safetensors(loaded_or_module: LoadedEncoder | nnx.Module, path: str) -> None:
    """Write the encoder's variables as a safetensors file for use outside JAX.

    Only process 0 writes, so in the other processes of a multi-process run
    this does nothing.
    """
    from safetensors.numpy import save_file

    if not is_primary():
        return

    module = getattr(loaded_or_module, "module", loaded_or_module)
    tensors = {name: np.ascontiguousarray(v) for name, v in flat_state(module).items()}
    tmp = path + ".tmp"
    save_file(tensors, tmp)
    os.replace(tmp, path)
