"""Transfer datasets derived from the embedded mnist5k images, as numpy arrays.

Every function is deterministic: the random draws come from fixed seeds, so two
builds of a dataset give the same bytes. The TFDS builders in
`pretrain.data.builders` wrap these functions.

- `source_target_split`: two disjoint, label-stratified halves of mnist5k.
- `rotate_digits`: each image rotated by its own angle drawn uniformly in
  [0, 2 pi).
- `noise_background`: the background replaced by uniform noise, as in the
  MNIST "background random" variant of Larochelle et al., "An empirical
  evaluation of deep architectures on problems with many factors of
  variation" (ICML 2007).
- `to_digits_format`: 8x8 images in the 0..16 range of scikit-learn's digits.
"""

import numpy as np
import scipy.ndimage
from sklearn.model_selection import train_test_split

# Fixed seeds of the derived datasets. Changing one changes the dataset, so
# bump the builder's VERSION with it.
SPLIT_SEED = 20070620
ROTATION_SEED = 1
NOISE_SEED = 2

# MNIST digits are size-normalised into a 20x20 box centred in the 28x28
# frame, so rows and columns 4..23 hold nearly all the ink (96.7% of it in
# mnist5k).
_DIGIT_BOX = slice(4, 24)

# scikit-learn's digits are 32x32 bitmaps whose 4x4 blocks are counted
# into 8x8 images of values 0..16 (load_digits().DESCR, scikit-learn 1.9.1).
_BITMAP_SIZE = 32
_BLOCK = 4
_INK_THRESHOLD = 128  # a pixel of 0..255 counts as set from this value up


def source_target_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices of mnist5k into a source and a target half.

    The halves are disjoint, cover every row and have the same number of
    examples per class. Both index arrays are sorted int64.
    """
    indices = np.arange(len(labels))
    source, target = train_test_split(
        indices, test_size=0.5, stratify=labels, random_state=SPLIT_SEED
    )
    return np.sort(source).astype(np.int64), np.sort(target).astype(np.int64)


def rotate_digits(images: np.ndarray) -> np.ndarray:
    """Rotate each uint8 image [n, H, W, 1] about its centre by a random angle.

    Angles are drawn uniformly in [0, 2 pi) with ROTATION_SEED, one per image
    in order. Interpolation is bilinear (order=1), the frame keeps its size
    (reshape=False) and pixels rotated in from outside are 0.
    """
    rng = np.random.default_rng(ROTATION_SEED)
    degrees = np.degrees(rng.uniform(0.0, 2.0 * np.pi, size=len(images)))
    rotated = np.empty_like(images)
    for index, (image, angle) in enumerate(zip(images, degrees, strict=True)):
        turned = scipy.ndimage.rotate(
            image[..., 0].astype(np.float64), angle, reshape=False, order=1
        )
        rotated[index, ..., 0] = _to_uint8(turned)
    return rotated


def noise_background(images: np.ndarray) -> np.ndarray:
    """Put each uint8 image [n, H, W, C] on a background of uniform noise.

    Every pixel becomes max(digit, noise), with noise drawn uniformly from the
    integers 0..255 with NOISE_SEED. Background pixels (0) so take the noise
    value, and a stroke pixel keeps its value unless the noise is brighter.
    Taking the max instead of thresholding keeps the anti-aliased stroke
    edges.
    """
    rng = np.random.default_rng(NOISE_SEED)
    noise = rng.integers(0, 256, size=images.shape, dtype=np.uint8)
    return np.maximum(images, noise)


def to_digits_format(images: np.ndarray) -> np.ndarray:
    """Turn uint8 MNIST images [n, 28, 28, 1] into digits-style [n, 8, 8, 1].

    The steps follow how scikit-learn's digits were made: the 20x20 digit box
    is cropped, enlarged to a 32x32 bitmap (bilinear) and thresholded at
    _INK_THRESHOLD, and each 4x4 block becomes the count of its set pixels.
    The result is uint8 in 0..16, as `digits` stores it.
    """
    box = images[:, _DIGIT_BOX, _DIGIT_BOX, 0].astype(np.float64)
    factor = _BITMAP_SIZE / box.shape[1]
    # Zoom only the two image axes, never across examples.
    bitmaps = scipy.ndimage.zoom(box, (1.0, factor, factor), order=1)
    bitmaps = bitmaps >= _INK_THRESHOLD
    side = _BITMAP_SIZE // _BLOCK
    blocks = bitmaps.reshape(len(images), side, _BLOCK, side, _BLOCK)
    counts = blocks.sum(axis=(2, 4))
    return counts.astype(np.uint8)[..., np.newaxis]


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)
