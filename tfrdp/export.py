"""SavedModel export: named signatures over uint8 digits, with a JSON metadata asset.

The exported graph needs only tensorflow and tensorflow_compression (import it
before `tf.saved_model.load` so its range-coding ops are registered).

Signatures (N digits, d latent dimensions):
    encode(images uint8 [N,28,28,1]) -> {symbols: int32 [N,d]}
    decode(symbols int32 [N,d], seed int64 []) -> {images: uint8 [N,28,28,1]}
    compress(images) -> {bitstring: string [], count: int32 []}
    decompress(bitstring string [], count int32 [], seed int64 []) -> {images}
    reconstruct(images, seed int64 []) -> {images}
The decoder noise is drawn from `seed` with the stateless Philox generator, so
the same seed gives the same pixels in every process.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfrdp import __version__, models
from tfrdp.entropy import RANGE_CODER_PRECISION, SymbolCoder
from tfrdp.fsutil import staged_path

METADATA_FILE = "tfrdp.json"
TRANSFORMS_DIR = "transforms/1"  # the custom-op-free export, inside the full one
TRANSFORM_SIGNATURES = ("encode", "decode", "reconstruct")
NOISE_ALGORITHM = "philox"  # fixed: "auto_select" may differ between CPU and GPU

IMAGES = tf.TensorSpec([None, 28, 28, 1], tf.uint8, name="images")
SEED = tf.TensorSpec([], tf.int64, name="seed")
BITSTRING = tf.TensorSpec([], tf.string, name="bitstring")
COUNT = tf.TensorSpec([], tf.int32, name="count")


def images_to_float(images):
    return tf.cast(images, tf.float32) / 255.0


def float_to_images(images):
    return tf.cast(tf.round(tf.clip_by_value(images, 0.0, 1.0) * 255.0), tf.uint8)


class ExportedCodec(tf.Module):
    """What a SavedModel holds: the trained transforms and the range-coding tables."""

    def __init__(self, model, metadata_path):
        super().__init__(name="tfrdp_codec")
        self.encoder = model.encoder
        self.decoder = model.decoder
        self.levels = model.config.levels
        self.latent_dim = model.config.latent_dim
        self.noise_dim = model.config.noise_dim
        self.coder = SymbolCoder(model.prior.pmf().numpy())
        self.metadata = tf.saved_model.Asset(str(metadata_path))
        self.symbols_spec = tf.TensorSpec([None, self.latent_dim], tf.int32, name="symbols")
        self.decode = tf.function(self._decode, input_signature=[self.symbols_spec, SEED])
        self.decompress = tf.function(self._decompress,
                                      input_signature=[BITSTRING, COUNT, SEED])

    def _symbols(self, images):
        latent = self.encoder(images_to_float(images), training=False)
        return tf.cast(tf.round(models.to_levels(latent, self.levels)), tf.int32)

    def _images(self, symbols, seed):
        tf.debugging.assert_non_negative(symbols, message="symbols must be >= 0")
        tf.debugging.assert_less(symbols, self.levels, message="symbols must be < levels")
        count = tf.shape(symbols)[0]
        noise = tf.random.stateless_normal(
            [count, self.noise_dim], seed=tf.stack([seed, tf.constant(0, tf.int64)]),
            alg=NOISE_ALGORITHM)
        latent = models.dequantize(symbols, self.levels)
        return float_to_images(self.decoder(tf.concat([latent, noise], -1), training=False))

    @tf.function(input_signature=[IMAGES])
    def encode(self, images):
        return {"symbols": self._symbols(images)}

    def _decode(self, symbols, seed):
        return {"images": self._images(symbols, seed)}

    @tf.function(input_signature=[IMAGES])
    def compress(self, images):
        symbols = self._symbols(images)
        return {"bitstring": self.coder.compress(symbols), "count": tf.shape(symbols)[0]}

    def _decompress(self, bitstring, count, seed):
        return {"images": self._images(self.coder.decompress(bitstring, count), seed)}

    @tf.function(input_signature=[IMAGES, SEED])
    def reconstruct(self, images, seed):
        return {"images": self._images(self._symbols(images), seed)}

    def signatures(self):
        return {"encode": self.encode, "decode": self.decode, "compress": self.compress,
                "decompress": self.decompress, "reconstruct": self.reconstruct}


def save_transforms(model_dir, path=None):
    """A second SavedModel without tensorflow-compression's custom ops, for stock TF Serving.

    Re-saves the `encode`, `decode` and `reconstruct` signatures of the full
    SavedModel in `model_dir` (range coding then runs client-side) into a
    version folder, as TensorFlow Serving expects: by default
    `model_dir/transforms/1`. Returns that path.
    """
    import tensorflow_compression  # noqa: F401  (the full model's ops must be registered)
    path = Path(path or Path(model_dir) / TRANSFORMS_DIR)
    full = tf.saved_model.load(str(model_dir))
    transforms = tf.Module()
    transforms.encoder, transforms.decoder = full.encoder, full.decoder
    transforms.metadata = full.metadata
    signatures = {name: full.signatures[name] for name in TRANSFORM_SIGNATURES}
    tf.saved_model.save(transforms, str(path), signatures=signatures)
    return path


def weights_fingerprint(model):
    """Hex digest of everything that decides the decoded pixels of a file."""
    digest = hashlib.sha256()
    arrays = [w.numpy() for w in model.encoder.weights + model.decoder.weights]
    arrays += SymbolCoder(model.prior.pmf().numpy()).tables()
    for array in arrays:
        digest.update(str((array.dtype.str, array.shape)).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def model_metadata(model, name, metrics):
    config = model.config
    return {
        "format": "tfrdp-savedmodel",
        "format_version": 1,
        "tfrdp_version": __version__,
        "name": name,
        "fingerprint": weights_fingerprint(model),
        "image_shape": list(models.IMAGE_SHAPE),
        "latent_dim": config.latent_dim,
        "levels": config.levels,
        "noise_dim": config.noise_dim,
        "lambda": config.lam,
        "rate_weight": config.rate_weight,
        "nominal_bits_per_digit": config.nominal_bits,
        "estimated_bits_per_digit": metrics.get("bits"),
        "test_metrics": metrics,
        "prior_pmf": model.prior.pmf().numpy().astype(float).tolist(),
        "range_coder_precision": RANGE_CODER_PRECISION,
        "noise_algorithm": NOISE_ALGORITHM,
    }


def export_model(model, export_dir, metadata, overwrite=False):
    """Writes the SavedModel atomically: to a temporary folder, then renamed.

    Returns the metadata as written. An existing `export_dir` is replaced only
    with `overwrite`; a crash never leaves a half-written model under its name.
    """
    export_dir = Path(export_dir)
    if export_dir.exists() and not overwrite:
        raise FileExistsError(f"{export_dir} exists (pass --overwrite to replace it)")
    export_dir.parent.mkdir(parents=True, exist_ok=True)
    with staged_path(export_dir) as staging:
        staging.mkdir()
        metadata_path = staging.parent / METADATA_FILE
        metadata_path.write_text(json.dumps(metadata, indent=2) + "\n")
        codec = ExportedCodec(model, metadata_path)
        tf.saved_model.save(codec, str(staging), signatures=codec.signatures())
        save_transforms(staging)
    return metadata


def read_metadata(export_dir):
    return json.loads((Path(export_dir) / "assets" / METADATA_FILE).read_text())
