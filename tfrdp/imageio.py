"""Reading digits to compress and writing decompressed digits.

Inputs: one 28x28 grayscale PNG, a folder of such PNGs (sorted by name), a
.npy array uint8 [N,28,28] or [N,28,28,1], or an MNIST IDX image file
(`*-idx3-ubyte`, optionally `.gz`). Outputs: .npy uint8 [N,28,28,1], a folder
of PNGs, one PNG when N = 1, and a contact-sheet grid PNG.
"""

import gzip
import io
import math
from pathlib import Path

import numpy as np

from tfrdp.errors import TfrdpError
from tfrdp.fsutil import staged_path, write_bytes_atomic

DIGIT_SHAPE = (28, 28, 1)
EXPECTED = ("a 28x28 grayscale PNG, a folder of such PNGs, a .npy array uint8 [N,28,28] or "
            "[N,28,28,1], or an MNIST IDX image file (*-idx3-ubyte[.gz])")


def _decode_png(content, name):
    import tensorflow as tf
    if content[:8] != b"\x89PNG\r\n\x1a\n" or len(content) < 33:
        raise TfrdpError(f"{name}: not a PNG file")
    if content[24] > 8:  # IHDR bit depth
        raise TfrdpError(f"{name}: expected an 8-bit PNG, got {content[24]}-bit")
    try:
        image = tf.io.decode_png(content, channels=0).numpy()
    except (tf.errors.InvalidArgumentError, ValueError):
        raise TfrdpError(f"{name}: not a readable PNG") from None
    if image.shape[-1] != 1:
        raise TfrdpError(f"{name}: expected a grayscale PNG, got {image.shape[-1]} channels")
    if image.shape[:2] != DIGIT_SHAPE[:2]:
        raise TfrdpError(f"{name}: expected 28x28 pixels, got "
                         f"{image.shape[1]}x{image.shape[0]}")
    return image


def _read_png(path):
    return _decode_png(path.read_bytes(), path)[None]


def _read_png_folder(path):
    files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".png" and p.is_file())
    if not files:
        raise TfrdpError(f"{path}: folder holds no .png files; expected {EXPECTED}")
    return np.stack([_decode_png(p.read_bytes(), p) for p in files])


def _read_npy(source, name=None):
    path = name or source
    try:
        array = np.load(source, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise TfrdpError(f"{path}: not a readable .npy array ({error})") from None
    if array.dtype != np.uint8:
        raise TfrdpError(f"{path}: expected dtype uint8, got {array.dtype}")
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[1:] != DIGIT_SHAPE:
        raise TfrdpError(f"{path}: expected shape [N,28,28] or [N,28,28,1], got "
                         f"{list(array.shape)}")
    if len(array) == 0:
        raise TfrdpError(f"{path}: holds no digits")
    return array


def digits_from_bytes(content, name):
    """A PNG or .npy file's bytes (e.g. a request body) as uint8 [N,28,28,1]."""
    if content[:8] == b"\x89PNG\r\n\x1a\n":
        return _decode_png(content, name)[None]
    if content[:6] == b"\x93NUMPY":
        return _read_npy(io.BytesIO(content), name)
    raise TfrdpError(f"{name}: expected a PNG or .npy file")


def read_idx_images(path):
    """An MNIST IDX3 file (optionally gzipped) as uint8 [N,28,28,1]."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as file:
            content = file.read()
    except (OSError, EOFError) as error:
        raise TfrdpError(f"{path}: cannot read IDX file ({error})") from None
    if len(content) < 16 or content[:4] != b"\x00\x00\x08\x03":
        raise TfrdpError(f"{path}: not an IDX3 uint8 image file")
    count, rows, cols = (int.from_bytes(content[i:i + 4], "big") for i in (4, 8, 12))
    if (rows, cols) != DIGIT_SHAPE[:2]:
        raise TfrdpError(f"{path}: expected 28x28 images, got {rows}x{cols}")
    if len(content) != 16 + count * rows * cols:
        raise TfrdpError(f"{path}: IDX file is truncated or has trailing bytes")
    return np.frombuffer(content, np.uint8, offset=16).reshape(count, *DIGIT_SHAPE)


def read_digits(path):
    """Reads any supported input as uint8 [N,28,28,1] with N >= 1."""
    path = Path(path)
    if not path.exists():
        raise TfrdpError(f"{path}: no such file or folder")
    name = path.name.lower()
    if path.is_dir():
        digits = _read_png_folder(path)
    elif name.endswith(".png"):
        digits = _read_png(path)
    elif name.endswith(".npy"):
        digits = _read_npy(path)
    elif name.endswith("-idx3-ubyte") or name.endswith("-idx3-ubyte.gz"):
        digits = read_idx_images(path)
    else:
        raise TfrdpError(f"{path}: unsupported input; expected {EXPECTED}")
    if len(digits) == 0:
        raise TfrdpError(f"{path}: holds no digits")
    return digits


def encode_png(image):
    import tensorflow as tf
    return tf.io.encode_png(image).numpy()


def grid(digits, columns=None, border=1):
    """A contact sheet: digits in rows of `columns`, separated by `border` grey pixels."""
    count = len(digits)
    columns = columns or min(count, math.ceil(math.sqrt(count)))
    rows = math.ceil(count / columns)
    cell = DIGIT_SHAPE[0] + border
    sheet = np.full((rows * cell + border, columns * cell + border, 1), 128, np.uint8)
    for index, digit in enumerate(digits):
        row, column = divmod(index, columns)
        top, left = border + row * cell, border + column * cell
        sheet[top:top + 28, left:left + 28] = digit
    return sheet


def write_digits(digits, path):
    """Writes uint8 [N,28,28,1] by the output's form: .npy, one .png (N=1) or a folder."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, digits)
        write_bytes_atomic(path, buffer.getvalue())
    elif path.suffix.lower() == ".png":
        if len(digits) != 1:
            raise TfrdpError(f"{path}: one PNG holds one digit, not {len(digits)}; "
                             "give a folder or a .npy output (or --grid for a contact sheet)")
        write_bytes_atomic(path, encode_png(digits[0]))
    else:
        width = max(5, len(str(len(digits) - 1)))
        with staged_path(path) as folder:
            folder.mkdir()
            for index, digit in enumerate(digits):
                (folder / f"digit_{index:0{width}d}.png").write_bytes(encode_png(digit))


def write_grid(digits, path, columns=None):
    write_bytes_atomic(path, encode_png(grid(digits, columns)))
