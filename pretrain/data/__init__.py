"""Datasets, label budgets and input scaling for pretraining experiments."""

from pretrain.data.loading import (
    EMBEDDED_DATASETS,
    Dataset,
    DatasetError,
    default_data_dir,
    load_dataset,
)
from pretrain.data.scaling import SCALER_KINDS, Scaler, fit_scaler
from pretrain.data.splits import LabelSplit, label_split, parse_budget

__all__ = [
    "EMBEDDED_DATASETS",
    "SCALER_KINDS",
    "Dataset",
    "DatasetError",
    "LabelSplit",
    "Scaler",
    "default_data_dir",
    "fit_scaler",
    "label_split",
    "load_dataset",
    "parse_budget",
]
