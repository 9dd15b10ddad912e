"""MNIST through tensorflow-datasets, offline.

No machine running tfrdp is assumed to reach the internet. tfds prepares MNIST
from the four canonical IDX files in a folder the user gives (`--mnist-dir`),
with checksum validation forced so that a corrupted file is detected.
"""

import os
import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfrdp.errors import TfrdpError

MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
DEFAULT_DATA_DIR = Path(".tfds")
SPLIT_SIZES = {"train": 60000, "test": 10000}


class DataError(TfrdpError):
    """MNIST could not be found or prepared; the message is meant for the user."""


def _disable_gcs(tfds):
    # tfds otherwise probes Google Cloud Storage for dataset metadata, which
    # stalls on machines without network. Its own tests flip this switch.
    try:
        from tensorflow_datasets.core.utils import gcs_utils
        gcs_utils._is_gcs_disabled = True  # pylint: disable=protected-access
    except ImportError:
        pass
    os.environ.setdefault("NO_GCE_CHECK", "true")


def prepare_mnist(mnist_dir=None, data_dir=None):
    """Returns a prepared tfds MNIST builder, preparing it from `mnist_dir` if needed."""
    import tensorflow_datasets as tfds
    _disable_gcs(tfds)
    data_dir = Path(data_dir or DEFAULT_DATA_DIR)
    builder = tfds.builder("mnist", data_dir=str(data_dir))
    if builder.is_prepared():
        return builder
    if mnist_dir is None:
        raise DataError(
            f"MNIST is not prepared in {data_dir} and there is no network: pass "
            "--mnist-dir with the folder holding the four MNIST .gz files")
    mnist_dir = Path(mnist_dir)
    missing = [name for name in MNIST_FILES if not (mnist_dir / name).is_file()]
    if missing:
        raise DataError(
            f"--mnist-dir {mnist_dir} lacks the MNIST file(s): {', '.join(missing)}")
    config = tfds.download.DownloadConfig(
        manual_dir=str(mnist_dir), force_checksums_validation=True)
    try:
        builder.download_and_prepare(download_config=config)
    except Exception as error:  # tfds raises many types; the user needs one line.
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise DataError(f"could not prepare MNIST from --mnist-dir {mnist_dir}: "
                        f"{type(error).__name__}: {first_line}") from error
    # The extracted copies (53 MB) are only needed during preparation.
    shutil.rmtree(data_dir / "downloads" / "extracted", ignore_errors=True)
    return builder


def _split(split, mnist_dir, data_dir, limit):
    """The examples of `split` in stored order, optionally only the first `limit`."""
    dataset = prepare_mnist(mnist_dir, data_dir).as_dataset(split=split, shuffle_files=False)
    return dataset if limit is None else dataset.take(limit)


def _to_float(images):
    return tf.cast(images, tf.float32) / 255.0


def mnist_dataset(split, batch_size, mnist_dir=None, data_dir=None, training=False,
                  limit=None, seed=None):
    """MNIST `split` as float images in [0, 1], shape [batch, 28, 28, 1].

    Training datasets are shuffled, repeated forever and drop the last partial
    batch (static shapes for the gradient penalty); evaluation datasets go
    through the split once, in order, optionally only its first `limit` digits.

    The pipeline decodes the split once into a uint8 in-memory cache (47 MB
    for the training split), converts whole batches to float and prefetches,
    so the training step never waits for data. Under a multi-worker strategy
    each worker keeps its share of every batch (data sharding: tfds stores
    MNIST in a single file, so there are no files to split).
    """
    dataset = _split(split, mnist_dir, data_dir, limit)
    dataset = dataset.map(lambda example: example["image"],
                          num_parallel_calls=tf.data.AUTOTUNE).cache()
    if training:
        dataset = dataset.shuffle(SPLIT_SIZES[split], seed=seed,
                                  reshuffle_each_iteration=True).repeat()
    dataset = dataset.batch(batch_size, drop_remainder=training)
    dataset = dataset.map(_to_float, num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def load_images(split, mnist_dir=None, data_dir=None, limit=None):
    """The digits of `split` as one uint8 array [N, 28, 28, 1]."""
    return load_labeled(split, mnist_dir, data_dir, limit)[0]


def load_labeled(split, mnist_dir=None, data_dir=None, limit=None):
    """(digits uint8 [N, 28, 28, 1], labels int64 [N]) of `split`, in stored order."""
    import tensorflow_datasets as tfds
    dataset = _split(split, mnist_dir, data_dir, limit)
    dataset = dataset.map(lambda example: (example["image"], example["label"])).batch(10000)
    batches = list(tfds.as_numpy(dataset))
    return (np.concatenate([images for images, _ in batches], axis=0),
            np.concatenate([labels for _, labels in batches], axis=0))
