"""Read a TFDS split batch by batch instead of into one array.

`StreamedArray` looks like a float32 array [n, *shape] to the code that
trains on it: it has a length, a shape, and fancy indexing by row numbers.
Indexing reads those rows from the `array_record` data source and applies
the array's transforms (scaling, flattening, the encoders of lower layers),
so memory contains one batch, not the split. `pretrain.train.PhaseTrainer`
indexes its data once per step when `scan=False`, which is how `--config.stream`
pretrains on a dataset larger than memory.

TODO: reads are synchronous; a prefetching loader (grain, say) would overlap
them with the step.
"""

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

Transform = Callable[[np.ndarray], np.ndarray]

# Rows per read when the scaler fit walks a whole split.
CHUNK_ROWS = 1024


class StreamedArray:
    """Rows `rows` of a TFDS data source, read on indexing and transformed.

    Args:
      source: a TFDS data source (`builder.as_data_source(split=...)`).
      rows: record numbers of this array's rows, in order.
      key: the image feature of each record.
      row_shape: the shape of one image as stored, (H, W, C) or (length, C).
      transforms: functions applied in order to each read batch.
    """

    dtype = np.dtype(np.float32)  # every read batch is float32

    def __init__(
        self,
        source: Any,
        rows: np.ndarray,
        key: str,
        row_shape: tuple[int, ...],
        transforms: tuple[Transform, ...] = (),
    ):
        self.source = source
        self.rows = np.asarray(rows, np.int64)
        self.key = key
        self.row_shape = tuple(row_shape)
        self.transforms = transforms
        self._shape: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        """Return (n, *shape of one transformed row); the first call reads a row."""
        if self._shape is None:
            if not self.transforms:
                self._shape = (len(self), *self.row_shape)
            else:
                self._shape = (len(self), *self[:1].shape[1:])
        return self._shape

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, index) -> np.ndarray:
        rows = self.rows[index]
        if rows.ndim == 0:
            return self._read(rows[None])[0]
        return self._read(rows)

    def _read(self, rows: np.ndarray) -> np.ndarray:
        records = read_records(self.source, [int(row) for row in rows])
        x = np.empty((len(rows), *self.row_shape), np.float32)
        for i, record in enumerate(records):
            # The reshape adds the channel axis to 2-D (H, W) image features.
            x[i] = np.reshape(record[self.key], self.row_shape)
        for transform in self.transforms:
            x = np.asarray(transform(x), np.float32)
        return x

    def subset(self, index) -> "StreamedArray":
        """Return the rows `self.rows[index]` as a new array, without reading them."""
        return StreamedArray(
            self.source, self.rows[index], self.key, self.row_shape, self.transforms
        )

    def map(self, transform: Transform) -> "StreamedArray":
        """Return the same rows with `transform` applied after the current ones."""
        return StreamedArray(
            self.source,
            self.rows,
            self.key,
            self.row_shape,
            (*self.transforms, transform),
        )

    def reshape(self, n: int, *shape: int) -> "StreamedArray":
        """Flatten each row: only `reshape(len(x), -1)`, as dense encoders call it."""
        if n != len(self) or shape != (-1,):
            raise ValueError(
                f"a streamed array only reshapes to (len, -1), got {(n, *shape)}; "
                "map a function that reshapes each batch instead"
            )
        return self.map(_flatten)

    def chunks(self, size: int = CHUNK_ROWS) -> Iterator[np.ndarray]:
        """Yield the rows in order, `size` at a time."""
        for start in range(0, len(self), size):
            yield self[start : start + size]

    def __array__(self, dtype=None, copy=None):
        # Reject the silent whole-split read that np.asarray(x) would be.
        raise TypeError(
            f"a StreamedArray of {len(self)} rows is read batch by batch; index "
            "it with row numbers instead of converting it to an array"
        )


def _flatten(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1)


def read_records(source: Any, indices: list[int]) -> list[dict]:
    """Read records `indices` of a TFDS data source, in one call where it can."""
    read_batch = getattr(source, "__getitems__", None)
    if read_batch is not None:
        return list(read_batch(indices))
    return [source[index] for index in indices]
