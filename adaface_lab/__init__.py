"""adaface_lab."""
