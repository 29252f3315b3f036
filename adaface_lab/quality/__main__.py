"""``python -m adaface_lab.quality PATH...``: the same as ``adaface-lab quality PATH...``."""

import sys

from .cli import quality_main

if __name__ == "__main__":
    sys.exit(quality_main())
