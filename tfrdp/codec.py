"""Compressed files from exported SavedModels: the work behind `tfrdp compress/decompress`."""

import json
from pathlib import Path

from tfrdp import fileformat
from tfrdp.errors import TfrdpError
from tfrdp.export import METADATA_FILE
from tfrdp.imageio import DIGIT_SHAPE

DEFAULT_MODEL_DIR = Path("saved_models")


class Codec:
    """An exported tfrdp SavedModel and its metadata, ready to code files."""

    def __init__(self, path):
        self.path = Path(path)
        metadata_file = self.path / "assets" / METADATA_FILE
        if not self.path.is_dir():
            raise TfrdpError(f"model {self.path} not found")
        if not metadata_file.is_file():
            raise TfrdpError(f"{self.path} is not a tfrdp SavedModel (no assets/{METADATA_FILE})")
        self.metadata = json.loads(metadata_file.read_text())
        import tensorflow as tf
        import tensorflow_compression  # noqa: F401  (registers the range-coding ops)
        self._tf = tf
        self._model = tf.saved_model.load(str(self.path))

    @property
    def saved_model(self):
        return self._model

    @property
    def name(self):
        return self.metadata["name"]

    @property
    def fingerprint(self):
        return self.metadata["fingerprint"]

    def compress(self, digits, seed):
        """uint8 [N,28,28,1] -> the bytes of a .rdp file."""
        result = self._model.signatures["compress"](images=self._tf.constant(digits))
        header = fileformat.Header(self.name, self.fingerprint, int(result["count"]),
                                   DIGIT_SHAPE, seed)
        return fileformat.pack(header, result["bitstring"].numpy())

    def decompress(self, header, payload):
        """Digits uint8 [N,28,28,1] of a parsed file made with this model."""
        if header.fingerprint != self.fingerprint:
            raise TfrdpError(
                f"model {self.path} (fingerprint {self.fingerprint}) is not the model this "
                f"file was made with ({header.model_name}, fingerprint {header.fingerprint})")
        if header.image_shape != DIGIT_SHAPE or header.count < 1:
            raise TfrdpError(f"file holds {header.count} digits of shape "
                             f"{list(header.image_shape)}; this model decodes 28x28x1 digits")
        tf = self._tf
        images = self._model.signatures["decompress"](
            bitstring=tf.constant(payload), count=tf.constant(header.count, tf.int32),
            seed=tf.constant(header.seed, tf.int64))["images"]
        return images.numpy()

    def reconstruct(self, digits, seed):
        tf = self._tf
        return self._model.signatures["reconstruct"](
            images=tf.constant(digits), seed=tf.constant(seed, tf.int64))["images"].numpy()


def model_for(header, model=None, model_dir=DEFAULT_MODEL_DIR):
    """The Codec that decodes a file: `model`, or the one named in its header under `model_dir`."""
    if model is None:
        model = Path(model_dir) / header.model_name
        if not (model / "assets" / METADATA_FILE).is_file():
            raise TfrdpError(f"model {header.model_name!r} named in the file is not in "
                             f"{model_dir} (pass --model DIR or --model-dir)")
    return Codec(model)


def read_file(path):
    """Reads and checks a .rdp file: (Header, payload)."""
    path = Path(path)
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise TfrdpError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise TfrdpError(f"{path}: is a folder, not a tfrdp file") from None
    try:
        return fileformat.unpack(content)
    except fileformat.FormatError as error:
        raise fileformat.FormatError(f"{path}: {error}") from None


def bits_per_digit(byte_count, digit_count):
    return 8.0 * byte_count / digit_count if digit_count else float("nan")


def file_report(path, header, payload):
    """The fields `tfrdp info` prints, in order."""
    size = Path(path).stat().st_size
    return {
        "file": str(path),
        "format version": fileformat.VERSION,
        "model": header.model_name,
        "fingerprint": header.fingerprint,
        "digits": header.count,
        "image shape": "x".join(map(str, header.image_shape)),
        "seed": header.seed,
        "size": f"{size} bytes (header and checksum {size - len(payload)}, "
                f"payload {len(payload)})",
        "bits/digit": f"{bits_per_digit(size, header.count):.4f} (file), "
                      f"{bits_per_digit(len(payload), header.count):.4f} (payload)",
    }

