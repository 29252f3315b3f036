"""Uploaded images for the image quality inspector: read safely, with a message a page can show for every
file it cannot use, and a note for every conversion it made.

No image maths here: decoding (and the 16-bit / CMYK / alpha conversions and the decompression-bomb
guard) is :func:`adaface_lab.data.images.decode_image`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import streamlit as st
import torch

from adaface_lab.data.images import DEFAULT_MAX_PIXELS, CorruptImageError, ImageTooLargeError, decode_image, probe_image

SIZE = 112
MAX_PIXELS = DEFAULT_MAX_PIXELS

# What the page says about a file's pixel format when it had to convert it.
_MODE_NOTES = {
    "CMYK": "CMYK image: converted to RGB.",
    "I;16": "16-bit image: converted to 8 bits (values × 255/65535).",
    "I;16B": "16-bit image: converted to 8 bits (values × 255/65535).",
    "I;16L": "16-bit image: converted to 8 bits (values × 255/65535).",
    "I": "32-bit integer image: converted to 8 bits.",
    "F": "floating-point image: converted to 8 bits.",
    "RGBA": "transparency composited over black.",
    "LA": "grey image with transparency: composited over black, repeated over three channels.",
    "PA": "palette image with transparency: composited over black.",
    "L": "grey image: repeated over three channels.",
    "1": "black-and-white image: repeated over three channels.",
    "P": "palette image: converted to RGB.",
    "YCbCr": "YCbCr image: converted to RGB.",
    "LAB": "Lab image: converted to RGB.",
    "HSV": "HSV image: converted to RGB.",
}


@dataclass
class Upload:
    """An uploaded image read for the inspector.

    ``image``: uint8 (3, 112, 112) RGB, or None when the file was refused; ``error``: why it was
    refused (for ``st.error``); ``conversion``: how an unusual pixel format (16-bit, CMYK, alpha, grey …)
    was made RGB (for ``st.warning``); ``resized``: how the image was cut to the face size.
    """

    name: str
    image: torch.Tensor | None = None
    error: str | None = None
    conversion: str | None = None
    resized: str | None = None
    width: int = 0
    height: int = 0
    mode: str = ""


def read_upload(name: str, data: bytes, size: int = SIZE, max_pixels: int = MAX_PIXELS) -> Upload:
    """Decode an uploaded file to a (3, size, size) face crop, or say plainly why not (never raises).

    The centre square is cut and resized to ``size``. Refused: empty files, files that are not
    images, truncated or damaged files, and images above ``max_pixels`` (a decompression bomb is
    refused from its header, before any pixel is decoded).
    """
    out = Upload(name=name)
    if not data:
        out.error = f"`{name}` is empty (0 bytes)."
        return out
    try:
        out.width, out.height, out.mode = probe_image(data, max_pixels=max_pixels)
    except ImageTooLargeError as e:
        out.error = (f"`{name}` was refused: {e.reason}. Images above {max_pixels / 1e6:.0f} megapixels are not "
                     "decoded (a guard against decompression bombs); downscale it first.")
        return out
    except CorruptImageError as e:
        reason = ("its content is not a known image format: JPEG, PNG, WebP, TIFF, BMP, GIF …"
                  if "cannot identify image file" in e.reason else e.reason)
        out.error = f"`{name}` is not an image this app can read ({reason})."
        return out
    try:
        out.image = decode_image(data, size=size, center_crop=min(out.width, out.height), max_pixels=max_pixels)
    except ImageTooLargeError as e:
        out.error = f"`{name}` was refused: {e.reason}."
        return out
    except CorruptImageError as e:
        out.error = f"`{name}` looks damaged or truncated: its pixels cannot be decoded ({e.reason})."
        return out
    out.conversion = _MODE_NOTES.get(out.mode)
    if out.conversion is None and out.mode != "RGB":
        out.conversion = f"{out.mode} image: converted to RGB."
    if out.width != out.height:
        out.resized = f"centre square of the {out.width}×{out.height} image, resized to {size}×{size}"
    elif out.width != size:
        out.resized = f"resized from {out.width}×{out.height} to {size}×{size}"
    return out


@st.cache_data(max_entries=4, show_spinner="Reading the image …")
def read_upload_cached(name: str, digest: str, _data: bytes) -> Upload:
    """:func:`read_upload` cached on the file's name and content hash."""
    del digest
    return read_upload(name, _data)


def digest(data: bytes) -> str:
    """The SHA-256 of uploaded bytes (a cache key)."""
    return hashlib.sha256(data).hexdigest()
