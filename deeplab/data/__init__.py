"""Datasets in their official on-disk layouts, joint image + mask transforms, class names and palettes."""

from deeplab.data.classes import (
    ADE20K_CLASSES,
    CITYSCAPES_CLASSES,
    DATASET_INFO,
    IGNORE_INDEX,
    TOY_CLASSES,
    VOC_CLASSES,
    VOC_PALETTE,
    DatasetInfo,
    UnknownDatasetError,
    dataset_info,
    flat_palette,
)
from deeplab.data.datasets import (
    ADE20k,
    Cityscapes,
    CorruptSampleError,
    DatasetError,
    DatasetNotFoundError,
    SegmentationDataset,
    ToyDataset,
    VOCSegmentation,
    build_dataset,
)
from deeplab.data.transforms import eval_transforms, train_transforms

__all__ = [
    "ADE20k",
    "Cityscapes",
    "CorruptSampleError",
    "DatasetError",
    "DatasetNotFoundError",
    "SegmentationDataset",
    "ToyDataset",
    "VOCSegmentation",
    "build_dataset",
    "eval_transforms",
    "train_transforms",
    "ADE20K_CLASSES",
    "CITYSCAPES_CLASSES",
    "DATASET_INFO",
    "IGNORE_INDEX",
    "TOY_CLASSES",
    "VOC_CLASSES",
    "VOC_PALETTE",
    "DatasetInfo",
    "UnknownDatasetError",
    "dataset_info",
    "flat_palette",
]
