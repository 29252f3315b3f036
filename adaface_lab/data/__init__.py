"""Data: the built-in SyntheticFaces set, readers for real face data, and augmentations."""
