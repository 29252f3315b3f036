"""Data: the built-in SyntheticFaces set, readers for real face data, and augmentations.

Every data set yields ``(image, label, sample_id, meta)``: image a uint8 (3, H, W) RGB tensor,
label an int, sample_id an int stable within the set, meta a flat dict of scalars.
"""

from .augment import RECORD_FIELDS, AugmentConfig, augment, augment_batch
from .folders import ImageFolderFaces
from .images import CorruptImageError, ImageTooLargeError, decode_image
from .recordio import RecordIODataset, write_recordio
from .synthetic import SyntheticFaces, sample_grid, severity_accuracy_curve
from .verification import VerificationPairs, load_bin, load_pairs_txt, pairs_from_identities, write_bin

__all__ = [
    "AugmentConfig",
    "RECORD_FIELDS",
    "SyntheticFaces",
    "augment",
    "augment_batch",
    "sample_grid",
    "severity_accuracy_curve",
    "CorruptImageError",
    "ImageFolderFaces",
    "ImageTooLargeError",
    "RecordIODataset",
    "VerificationPairs",
    "decode_image",
    "load_bin",
    "load_pairs_txt",
    "pairs_from_identities",
    "write_bin",
    "write_recordio",
]
