"""Labelled subsets of the training pool: a label budget plus a validation set.

A budget B selects B labelled training examples, class-balanced. B // num_classes
go to each class, and the remaining B % num_classes go one each to distinct
classes drawn at random with the seed. The validation set of
max(B // 5, num_classes) examples is drawn the same way, disjoint from the
training labels, except that its remaining examples go first to classes that got
no extra training example, so train plus validation stays balanced. Which class
gets the largest share of those B + max(B // 5, num_classes) labels depends on
the seed, so a budget is accepted only if the smallest class has enough examples
for that largest share.

The budget "all" keeps the whole pool except a validation set of
max(round(n / 6), num_classes) examples, drawn in proportion to the class
frequencies, so validation is about a fifth of the training set.
"""

import dataclasses

import numpy as np

from pretrain.data.loading import DatasetError

_SPLIT_KEYS = frozenset({"train_idx", "val_idx", "budget", "seed"})


@dataclasses.dataclass(frozen=True, eq=False)
class LabelSplit:
    """Indices into the training pool of the labelled train and validation sets.

    Both index arrays are sorted int64 and disjoint. `budget` is None for "all".
    """

    train_idx: np.ndarray
    val_idx: np.ndarray
    budget: int | None
    seed: int

    def __post_init__(self):
        for field, indices in (
            ("train_idx", self.train_idx),
            ("val_idx", self.val_idx),
        ):
            if indices.dtype != np.int64 or indices.ndim != 1:
                raise DatasetError(
                    f"LabelSplit.{field} must be a 1-D int64 array, got "
                    f"{indices.dtype} of shape {indices.shape}"
                )
            if np.any(np.diff(indices) <= 0):
                raise DatasetError(
                    f"LabelSplit.{field} must be sorted without duplicates"
                )
        shared = np.intersect1d(self.train_idx, self.val_idx)
        if shared.size:
            raise DatasetError(
                f"LabelSplit.train_idx and val_idx share {shared.size} indices "
                f"(first: {shared[0]}), but they must be disjoint"
            )

    def to_dict(self) -> dict:
        """Return the split as JSON-ready lists of ints."""
        return {
            "train_idx": self.train_idx.tolist(),
            "val_idx": self.val_idx.tolist(),
            "budget": self.budget,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "LabelSplit":
        """Rebuild a split from `to_dict` output, raising on missing or extra keys."""
        if not isinstance(d, dict):
            raise DatasetError(f"a LabelSplit dict is expected, got {type(d).__name__}")
        missing = sorted(_SPLIT_KEYS - set(d))
        extra = sorted(set(d) - _SPLIT_KEYS, key=str)
        if missing or extra:
            raise DatasetError(
                f"invalid LabelSplit dict: missing keys {missing}, unknown keys "
                f"{extra}. Expected exactly {sorted(_SPLIT_KEYS)}."
            )
        budget = d["budget"]
        if budget is not None:
            budget = parse_budget(budget)
        return cls(
            train_idx=_index_array("train_idx", d["train_idx"]),
            val_idx=_index_array("val_idx", d["val_idx"]),
            budget=budget,
            seed=_check_seed(d["seed"]),
        )


def _index_array(field: str, values) -> np.ndarray:
    indices = np.asarray(values)
    if indices.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(indices.dtype, np.integer):
        raise DatasetError(
            f"invalid LabelSplit {field}: expected a list of integers, got "
            f"values of type {indices.dtype}"
        )
    return indices.astype(np.int64)


def parse_budget(value: str | int) -> int | None:
    """Parse a label budget: "all" gives None, "100" or 100 gives 100."""
    if isinstance(value, str):
        text = value.strip()
        if text.lower() == "all":
            return None
        if not text.isdecimal():
            raise DatasetError(
                f"invalid label budget {value!r}: pass a positive integer such "
                "as 100, or 'all'"
            )
        value = int(text)
    elif isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise DatasetError(
            f"invalid label budget {value!r}: pass a positive integer such as "
            "100, or 'all'"
        )
    if value < 1:
        raise DatasetError(
            f"invalid label budget {value}: pass a positive integer such as 100, "
            "or 'all'"
        )
    return int(value)


def label_split(
    labels: np.ndarray, budget: int | None, num_classes: int, seed: int
) -> LabelSplit:
    """Draw the labelled train and validation indices for a budget.

    The result depends only on (labels, budget, num_classes, seed).
    """
    labels = _check_labels(labels, num_classes)
    seed = _check_seed(seed)
    if budget is not None:
        budget = parse_budget(budget)
    rng = np.random.default_rng(seed)
    counts = np.bincount(labels, minlength=num_classes)
    n = len(labels)
    if budget is None:
        val_size = max(round(n / 6), num_classes)
        val_quota = _proportional_quotas(counts, val_size, rng)
        # Every class keeps at least one training example.
        _check_class_sizes(
            counts, val_quota + 1, "validation share plus one training example"
        )
        val_idx = _draw(labels, val_quota, rng)
        train_idx = np.setdiff1d(np.arange(n, dtype=np.int64), val_idx)
        return LabelSplit(train_idx, val_idx, budget, seed)
    _check_budget(budget, counts)
    any_class = np.ones(num_classes, dtype=bool)
    train_quota = _balanced_quotas(budget, any_class, rng)
    got_extra = train_quota > budget // num_classes
    val_quota = _balanced_quotas(_val_size(budget, num_classes), ~got_extra, rng)
    _check_class_sizes(
        counts, train_quota + val_quota, "training plus validation share"
    )
    # One permutation per class, so train takes its head and validation the next
    # examples, which keeps the two disjoint.
    train_idx, val_idx = [], []
    for label in range(num_classes):
        members = rng.permutation(np.flatnonzero(labels == label))
        train_idx.append(members[: train_quota[label]])
        val_idx.append(members[train_quota[label] :][: val_quota[label]])
    return LabelSplit(
        np.sort(np.concatenate(train_idx)).astype(np.int64),
        np.sort(np.concatenate(val_idx)).astype(np.int64),
        budget,
        seed,
    )


def _val_size(budget: int, num_classes: int) -> int:
    return max(budget // 5, num_classes)


def _check_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
        raise DatasetError(f"invalid num_classes {num_classes!r}: pass an integer")
    if num_classes < 2:
        raise DatasetError(
            f"invalid num_classes {num_classes}: classification needs at least 2"
        )
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(
            f"labels must be a 1-D integer array, got {labels.dtype} of shape "
            f"{labels.shape}"
        )
    if labels.size == 0:
        raise DatasetError("labels are empty: the training pool has no examples")
    out_of_range = labels[(labels < 0) | (labels >= num_classes)]
    if out_of_range.size:
        raise DatasetError(
            f"label {out_of_range[0]} is outside [0, {num_classes}). Labels "
            f"must be class indices 0..{num_classes - 1}."
        )
    return labels.astype(np.int64)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise DatasetError(f"invalid seed {seed!r}: pass a non-negative integer")
    return int(seed)


def _check_budget(budget: int, counts: np.ndarray) -> None:
    num_classes = len(counts)
    smallest = int(np.argmin(counts))
    largest = _largest_budget(counts)
    if largest < num_classes:
        raise DatasetError(
            f"class {smallest} has too few examples in the pool "
            f"({counts[smallest]}) for any label budget: each of the "
            f"{num_classes} classes needs at least 2, one for training and one "
            "for validation"
        )
    if not num_classes <= budget <= largest:
        raise DatasetError(
            f"invalid label budget {budget} for a pool of {counts.sum()} examples "
            f"and {num_classes} classes: pass a budget in [{num_classes}, "
            f"{largest}] so the validation set also fits, or 'all'. The upper "
            f"bound comes from class {smallest}, which has the fewest examples "
            f"({counts[smallest]})."
        )


def _largest_budget(counts: np.ndarray) -> int:
    """Return the largest budget that `label_split` accepts for every seed."""
    # Train plus validation, total = b + max(b // 5, num_classes) labels, is
    # split as evenly as possible, so the largest class share is
    # ceil(total / num_classes). The seed decides which class gets it, so a
    # budget fits every seed only if total <= num_classes * min(counts).
    num_classes = len(counts)
    return _largest_total_fit(num_classes * int(counts.min()), num_classes)


def _largest_total_fit(n: int, num_classes: int) -> int:
    """Return the largest b with b + max(b // 5, num_classes) <= n."""
    # The left side grows with b, so the result is the largest fitting b in the
    # regime b >= 5 * num_classes (validation b // 5) if one exists, else in the
    # regime b < 5 * num_classes (validation num_classes). In the first regime,
    # write n = 6q + s: then b = 5q + min(s, 4) is the largest b with b + b // 5 <= n.
    large = 5 * (n // 6) + min(n % 6, 4)
    if large >= 5 * num_classes:
        return large
    return min(5 * num_classes - 1, n - num_classes)


def _balanced_quotas(
    size: int, preferred: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Split size over classes equally, the remainder one each to random classes.

    The remainder goes to classes where `preferred` is True before any other.
    """
    num_classes = len(preferred)
    quotas = np.full(num_classes, size // num_classes, dtype=np.int64)
    order = np.concatenate(
        [
            rng.permutation(np.flatnonzero(preferred)),
            rng.permutation(np.flatnonzero(~preferred)),
        ]
    )
    quotas[order[: size % num_classes]] += 1
    return quotas


def _proportional_quotas(
    counts: np.ndarray, size: int, rng: np.random.Generator
) -> np.ndarray:
    # One example per class first, then the rest by the largest-remainder method
    # on the class frequencies. Ties are broken in a seeded random class order.
    num_classes = len(counts)
    quotas = np.ones(num_classes, dtype=np.int64)
    share = (size - num_classes) * counts / counts.sum()
    quotas += np.floor(share).astype(np.int64)
    remainder = share - np.floor(share)
    order = rng.permutation(num_classes)
    ranked = order[np.argsort(-remainder[order], kind="stable")]
    quotas[ranked[: size - quotas.sum()]] += 1
    return quotas


def _check_class_sizes(counts: np.ndarray, needed: np.ndarray, share: str) -> None:
    short = np.flatnonzero(counts < needed)
    if short.size:
        label = short[0]
        raise DatasetError(
            f"class {label} has {counts[label]} examples in the pool but "
            f"{needed[label]} are needed for its {share}. Pass a smaller "
            "budget or a pool with more examples of that class."
        )


def _draw(
    labels: np.ndarray, quotas: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    drawn = [
        rng.choice(np.flatnonzero(labels == label), size=quota, replace=False)
        for label, quota in enumerate(quotas)
    ]
    return np.sort(np.concatenate(drawn)).astype(np.int64)
