"""Load a labelled image dataset through TFDS into numpy arrays.

Datasets are read with `builder.as_data_source()`, which works without TensorFlow
but only for datasets prepared in the `array_record` file format.
"""

import contextlib
import dataclasses
import difflib
import os

import numpy as np
import tensorflow_datasets as tfds
from google.protobuf import json_format
from google.protobuf import message as protobuf_message
from sklearn.model_selection import train_test_split

from pretrain.data import builders
from pretrain.data.streaming import StreamedArray, read_records

EMBEDDED_DATASETS = (
    "digits",
    "mnist5k",
    "mnist1d",
    "mnist5k_source",
    "mnist5k_target",
    "mnist5k_rotated",
    "mnist5k_noise",
    "mnist5k_8x8",
)

_EMBEDDED_BUILDERS = {
    "digits": builders.Digits,
    "mnist5k": builders.Mnist5k,
    "mnist1d": builders.Mnist1d,
    "mnist5k_source": builders.Mnist5kSource,
    "mnist5k_target": builders.Mnist5kTarget,
    "mnist5k_rotated": builders.Mnist5kRotated,
    "mnist5k_noise": builders.Mnist5kNoise,
    "mnist5k_8x8": builders.Mnist5k8x8,
}

# Records fetched per `__getitems__` call when reading a split.
_READ_BATCH = 1024

# sklearn's `random_state` accepts integers in [0, 2**32).
_MAX_SEED = 2**32 - 1


class DatasetError(ValueError):
    """Invalid dataset name, dataset content or data-handling argument."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Images and labels split into a training pool and a fixed test set.

    Images are float32 [n, H, W, C] with the dataset's raw pixel values (digits
    0..16, MNIST 0..255). Labels are int32 class indices in [0, num_classes). The
    training pool never contains a test example.
    """

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    split_seed: int

    def __post_init__(self):
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise DatasetError(
                f"dataset {self.name!r} has train images of shape "
                f"{self.train_x.shape[1:]} but test images of shape "
                f"{self.test_x.shape[1:]}. Both splits need the same image shape."
            )
        for split, x, y in (
            ("train", self.train_x, self.train_y),
            ("test", self.test_x, self.test_y),
        ):
            if len(x) != len(y):
                raise DatasetError(
                    f"dataset {self.name!r} has {len(x)} {split} images but "
                    f"{len(y)} {split} labels. Pass one label per image."
                )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape (H, W, C) of one image."""
        return tuple(self.train_x.shape[1:])


def default_data_dir() -> str:
    """Return $TFDS_DATA_DIR if set, else TFDS's default ~/tensorflow_datasets."""
    return tfds.core.constants.get_default_data_dir()


def load_dataset(
    name: str,
    *,
    split_seed: int = 0,
    data_dir: str | None = None,
    test_fraction: float = 0.2,
) -> Dataset:
    """Prepare the dataset if needed, then read it and split off its test set.

    `name` is one of EMBEDDED_DATASETS, which prepare from files of installed
    packages without network access, or any TFDS catalog name, which TFDS
    prepares in array_record format and may download. A dataset with a
    `test` split (mnist1d, many catalog datasets) uses that split as the test
    set, so `split_seed` and `test_fraction` do not change it. Any other
    dataset gets a stratified test set of `test_fraction` of its `train`
    split, drawn with `split_seed`.
    """
    with _damaged_files_named(name, data_dir):
        return _load_in_memory(name, split_seed, data_dir, test_fraction)


def _load_in_memory(name, split_seed, data_dir, test_fraction) -> Dataset:
    builder, image_key, label_key, num_classes, image_shape = _open(
        name, split_seed, data_dir, test_fraction
    )

    def read(split: str) -> tuple[np.ndarray, np.ndarray]:
        x, y = _read_split(builder, split, image_key, label_key, image_shape)
        _validate_examples(name, x, y, num_classes, split=split)
        return x, y.astype(np.int32)

    def select(x, rows):
        return x[rows]

    return _assemble(
        name, builder, read, select, num_classes, split_seed, test_fraction
    )


def load_dataset_process_0_first(
    name: str,
    *,
    split_seed: int = 0,
    data_dir: str | None = None,
    stream: bool = False,
) -> Dataset:
    """`load_dataset` (or `load_streamed_dataset` with `stream`) in process 0
    first and then in the others, so that the processes of a multi-process
    run never prepare a TFDS dataset at once."""
    from pretrain.multihost import primary_first

    load = load_streamed_dataset if stream else load_dataset
    return primary_first(
        lambda: load(name, split_seed=split_seed, data_dir=data_dir),
        errors=(DatasetError,),
    )


def load_streamed_dataset(
    name: str,
    *,
    split_seed: int = 0,
    data_dir: str | None = None,
    test_fraction: float = 0.2,
) -> Dataset:
    """`load_dataset` with images left on disk: `train_x` and `test_x` are
    `StreamedArray`s over the same rows, read when indexed.

    The labels are read in one pass (they decide the stratified test split)
    and kept; images are not. Non-finite values are caught by the scaler fit,
    which reads every training image once.
    """
    with _damaged_files_named(name, data_dir):
        return _load_streamed(name, split_seed, data_dir, test_fraction)


def _load_streamed(name, split_seed, data_dir, test_fraction) -> Dataset:
    builder, image_key, label_key, num_classes, image_shape = _open(
        name, split_seed, data_dir, test_fraction
    )

    def read(split: str) -> tuple[object, np.ndarray]:
        source = builder.as_data_source(split=split)
        labels = _read_labels(source, label_key)
        _validate_examples(
            name, np.zeros((len(labels), 1), np.float32), labels, num_classes, split
        )
        rows = np.arange(len(labels))
        return StreamedArray(source, rows, image_key, image_shape), labels

    def select(x, rows):
        return x.subset(rows)

    return _assemble(
        name, builder, read, select, num_classes, split_seed, test_fraction
    )


# array_record raises RuntimeError for a truncated or missing record file,
# and protobuf these two for a damaged dataset_info.json or features.json.
_DAMAGED_FILE_ERRORS = (
    RuntimeError,
    protobuf_message.DecodeError,
    json_format.ParseError,
)


@contextlib.contextmanager
def _damaged_files_named(name: str, data_dir: str | None):
    """Turn the errors that TFDS and array_record raise for damaged prepared
    files into a DatasetError that names the folder to delete."""
    try:
        yield
    except _DAMAGED_FILE_ERRORS as error:
        root = default_data_dir() if data_dir is None else os.fspath(data_dir)
        folder = os.path.join(root, name)
        raise DatasetError(
            f"the prepared files of dataset {name!r} could not be read "
            f"({type(error).__name__}: {str(error)[:200]}); they are damaged. "
            f"Delete {folder!r} and run again to prepare the dataset anew"
        ) from None


def _assemble(
    name, builder, read, select, num_classes, split_seed, test_fraction
) -> Dataset:
    """Build the Dataset from `read(split) -> (x, y)`: the `test` split when
    there is one, else a stratified split of `train` (`select(x, rows)`)."""
    x, y = read("train")
    if "test" in builder.info.splits:
        train_x, train_y = x, y
        test_x, test_y = read("test")
    else:
        train_idx, test_idx = _stratified_test_split(name, y, test_fraction, split_seed)
        train_x, train_y = select(x, train_idx), y[train_idx]
        test_x, test_y = select(x, test_idx), y[test_idx]
    return Dataset(
        name=name,
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        num_classes=num_classes,
        split_seed=split_seed,
    )


def _open(name: str, split_seed: int, data_dir: str | None, test_fraction: float):
    """Check the arguments, prepare the dataset and return its builder with
    the image key, label key, class count and image shape."""
    _check_arguments(name, split_seed, test_fraction)
    data_dir = default_data_dir() if data_dir is None else os.fspath(data_dir)
    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise DatasetError(
            f"TFDS data directory {data_dir!r} is a file, not a directory; pass "
            "a directory with --config.data_dir or $TFDS_DATA_DIR"
        )
    builder = _builder(name, data_dir)
    # A builder defines its features before preparation, so an unsupported
    # dataset fails here before anything is downloaded.
    image_key, label_key = _supervised_keys(name, builder.info)
    num_classes = _num_classes(name, builder.info, label_key)
    # Builders of signals [length, channels] set SIGNAL_FEATURES.
    signal = getattr(builder, "SIGNAL_FEATURES", False)
    image_shape = _image_shape(name, builder.info, image_key, signal=signal)
    _prepare(name, builder, data_dir)
    _check_train_split(name, builder.info)
    return builder, image_key, label_key, num_classes, image_shape


def _read_labels(source, label_key: str) -> np.ndarray:
    n = len(source)
    labels = np.empty(n, dtype=np.int64)
    for start in range(0, n, _READ_BATCH):
        indices = list(range(start, min(start + _READ_BATCH, n)))
        for index, record in zip(indices, read_records(source, indices), strict=True):
            labels[index] = record[label_key]
    return labels.astype(np.int32)


def _check_arguments(name: str, split_seed: int, test_fraction: float) -> None:
    if not isinstance(name, str) or not name:
        raise DatasetError(
            f"invalid dataset name {name!r}: pass a non-empty string such as "
            f"{EMBEDDED_DATASETS[0]!r}"
        )
    seed_is_int = isinstance(split_seed, int | np.integer)
    if isinstance(split_seed, bool) or not seed_is_int:
        raise DatasetError(
            f"invalid split_seed {split_seed!r}: pass an integer in [0, {_MAX_SEED}]"
        )
    if not 0 <= split_seed <= _MAX_SEED:
        raise DatasetError(
            f"invalid split_seed {split_seed}: pass an integer in [0, {_MAX_SEED}]"
        )
    fraction_is_number = isinstance(test_fraction, int | float | np.floating)
    if isinstance(test_fraction, bool) or not fraction_is_number:
        raise DatasetError(
            f"invalid test_fraction {test_fraction!r}: pass a number strictly "
            "between 0 and 1, such as 0.2"
        )
    if not 0 < test_fraction < 1:
        raise DatasetError(
            f"invalid test_fraction {test_fraction}: pass a number strictly "
            "between 0 and 1, such as 0.2"
        )


def _builder(name: str, data_dir: str) -> tfds.core.DatasetBuilder:
    if name in _EMBEDDED_BUILDERS:
        return _EMBEDDED_BUILDERS[name](data_dir=data_dir)
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError as error:
        raise DatasetError(_unknown_name_message(name)) from error


def _prepare(name: str, builder: tfds.core.DatasetBuilder, data_dir: str) -> None:
    if builder.is_prepared():
        _check_array_record(name, builder, data_dir)
        return
    config = None
    if name in _EMBEDDED_BUILDERS:
        # The embedded builders read installed files only. Turning off the GCS
        # lookup keeps preparation from contacting TFDS's bucket as well.
        config = tfds.download.DownloadConfig(try_download_gcs=False)
    try:
        builder.download_and_prepare(file_format="array_record", download_config=config)
    except ModuleNotFoundError as error:
        if not _caused_by_missing_tensorflow(error):
            raise
        # TFDS 4.9.10 encodes numpy images for tfds.features.Image with
        # tf.image.encode_png, and the MNIST and CIFAR builders yield numpy images.
        raise DatasetError(
            f"preparing dataset {name!r} failed because TFDS needs TensorFlow to "
            "encode its features, and TensorFlow is not installed. Install "
            "tensorflow, or prepare the dataset with file_format='array_record' "
            f"where TensorFlow is installed and copy it into {data_dir}."
        ) from error


def _caused_by_missing_tensorflow(error: BaseException) -> bool:
    # TFDS re-raises the import error with the failing feature's name, so the
    # original ModuleNotFoundError is further down the cause chain.
    while error is not None:
        if isinstance(error, ModuleNotFoundError) and error.name == "tensorflow":
            return True
        error = error.__cause__
    return False


def _unknown_name_message(name: str) -> str:
    # The catalog list also contains the embedded builders once registered.
    catalog = tfds.list_builders(with_community_datasets=False)
    known = list(dict.fromkeys([*EMBEDDED_DATASETS, *catalog]))
    matches = difflib.get_close_matches(name, known, n=3)
    suggestion = ""
    if matches:
        suggestion = " Did you mean " + " or ".join(repr(m) for m in matches) + "?"
    embedded = ", ".join(repr(n) for n in EMBEDDED_DATASETS)
    return (
        f"unknown dataset {name!r}.{suggestion} The embedded datasets are "
        f"{embedded}. Any TFDS catalog name (such as 'mnist') also works where "
        "it is already prepared in data_dir or TFDS can download it."
    )


def _check_array_record(
    name: str, builder: tfds.core.DatasetBuilder, data_dir: str
) -> None:
    formats = builder.info.available_file_formats()
    # Metadata that names no file format (such as tfds.testing.mock_data
    # metadata) is left to `as_data_source`, which raises ValueError for it.
    if not formats or tfds.core.FileFormat.ARRAY_RECORD in formats:
        return
    found = ", ".join(sorted(f.value for f in formats))
    raise DatasetError(
        f"dataset {name!r} in {data_dir} is prepared as {found}, but reading "
        "without TensorFlow needs array_record files. Prepare it in another "
        "data_dir, or convert it with `tfds convert_format` to array_record."
    )


def _supervised_keys(name: str, info: tfds.core.DatasetInfo) -> tuple[str, str]:
    keys = info.supervised_keys
    # Some datasets have (input, target, weight) keys or nested dicts of keys,
    # which this loader does not use.
    if isinstance(keys, tuple) and len(keys) == 2:
        if all(isinstance(key, str) for key in keys):
            return keys
    if "image" in info.features and "label" in info.features:
        return "image", "label"
    raise DatasetError(
        f"dataset {name!r} has supervised_keys {keys!r} and no features named "
        f"'image' and 'label' (features: {sorted(info.features.keys())}). "
        "Only image classification datasets can be loaded."
    )


def _num_classes(name: str, info: tfds.core.DatasetInfo, label_key: str) -> int:
    feature = info.features[label_key]
    if not isinstance(feature, tfds.features.ClassLabel):
        raise DatasetError(
            f"dataset {name!r} has label feature {label_key!r} of type "
            f"{type(feature).__name__}, but only ClassLabel labels are supported"
        )
    if feature.num_classes < 2:
        raise DatasetError(
            f"dataset {name!r} has {feature.num_classes} classes, but "
            "classification needs at least 2"
        )
    return feature.num_classes


def _image_shape(
    name: str, info: tfds.core.DatasetInfo, image_key: str, *, signal: bool = False
) -> tuple[int, ...]:
    shape = tuple(info.features[image_key].shape)
    if len(shape) not in (2, 3) or None in shape:
        raise DatasetError(
            f"dataset {name!r} has image feature {image_key!r} of shape {shape}, "
            "but only fixed-size images of shape (H, W) or (H, W, C) are supported"
        )
    if len(shape) == 2 and not signal:
        shape += (1,)
    return shape


def _check_train_split(name: str, info: tfds.core.DatasetInfo) -> None:
    splits = info.splits
    # TFDS returns no splits when it has no split metadata, as under
    # tfds.testing.mock_data without metadata files. Reading "train" is then
    # left to TFDS.
    if len(splits) and "train" not in splits:
        raise DatasetError(
            f"dataset {name!r} has no 'train' split (splits: {sorted(splits)}). "
            "Only datasets with a 'train' split can be loaded."
        )


def _read_split(
    builder: tfds.core.DatasetBuilder,
    split: str,
    image_key: str,
    label_key: str,
    image_shape: tuple[int, int, int],
) -> tuple[np.ndarray, np.ndarray]:
    source = builder.as_data_source(split=split)
    n = len(source)
    images = np.empty((n, *image_shape), dtype=np.float32)
    labels = np.empty(n, dtype=np.int64)
    for start in range(0, n, _READ_BATCH):
        indices = list(range(start, min(start + _READ_BATCH, n)))
        for index, record in zip(indices, read_records(source, indices), strict=True):
            # The reshape adds the channel axis to 2-D (H, W) image features.
            images[index] = np.reshape(record[image_key], image_shape)
            labels[index] = record[label_key]
    return images, labels


def _validate_examples(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    split: str = "train",
) -> None:
    """Raise DatasetError unless images are finite and labels are class indices."""
    where = f"dataset {name!r} ({split} split)"
    if num_classes < 2:
        raise DatasetError(
            f"{where} has {num_classes} classes, but classification needs at least 2"
        )
    if len(images) == 0:
        raise DatasetError(f"{where} contains no examples")
    non_finite = images.size - np.count_nonzero(np.isfinite(images))
    if non_finite:
        raise DatasetError(
            f"{where} contains {non_finite} non-finite image "
            f"{'value' if non_finite == 1 else 'values'} (NaN or inf). "
            "Fix or remove those examples."
        )
    out_of_range = labels[(labels < 0) | (labels >= num_classes)]
    if out_of_range.size:
        raise DatasetError(
            f"{where} has label {out_of_range[0]} outside [0, "
            f"{num_classes}) ({out_of_range.size} labels out of range). Labels "
            f"must be class indices 0..{num_classes - 1}."
        )


def _stratified_test_split(
    name: str, labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    indices = np.arange(len(labels))
    try:
        train_idx, test_idx = train_test_split(
            indices, test_size=test_fraction, stratify=labels, random_state=seed
        )
    except ValueError as error:
        # sklearn raises when a class has one example or the test set is
        # smaller than the number of classes.
        raise DatasetError(
            f"cannot split a stratified test_fraction {test_fraction} off "
            f"dataset {name!r} ({len(labels)} examples): {error}"
        ) from error
    return np.sort(train_idx), np.sort(test_idx)
