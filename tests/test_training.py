"""Data, train.py flags, fit/resume and the training report on real MNIST."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, train_args
from tfrdp import data
from tfrdp.training import run


def test_mnist_dataset_is_float_images_in_unit_range(data_dir):
    batch = next(iter(data.mnist_dataset("train", 50, data_dir=data_dir, training=True)))
    assert batch.shape == (50, 28, 28, 1) and batch.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(batch)) and float(tf.reduce_max(batch)) == 1.0
    test = data.load_images("test", data_dir=data_dir)
    assert test.shape == (10000, 28, 28, 1) and test.dtype == np.uint8


def test_missing_mnist_is_one_clear_error_naming_the_flag(tmp_path):
    with pytest.raises(data.DataError, match="--mnist-dir"):
        data.prepare_mnist(None, tmp_path / "tfds")
    with pytest.raises(data.DataError, match="lacks the MNIST file"):
        data.prepare_mnist(tmp_path, tmp_path / "tfds")


def test_corrupted_mnist_file_is_detected(tmp_path, mnist_dir):
    for name in data.MNIST_FILES:
        content = (mnist_dir / name).read_bytes()
        if name.startswith("t10k-labels"):
            content = content[:-10] + bytes(10)
        (tmp_path / name).write_bytes(content)
    with pytest.raises(data.DataError, match="could not prepare MNIST"):
        data.prepare_mnist(tmp_path, tmp_path / "tfds")


def run_train_py(*flags):
    return subprocess.run([sys.executable, "train.py", *flags], capture_output=True, text=True,
                          cwd=REPO, timeout=600)


@pytest.mark.parametrize("flags, message", [
    (["--levels", "1"], "--levels: '1' must be an integer >= 2"),
    (["--latent-dim", "0"], "--latent-dim: '0' must be an integer >= 1"),
    (["--lambda", "-0.1"], "--lambda: '-0.1' must be a finite number >= 0"),
    (["--lambda", "nan"], "--lambda: 'nan' must be a finite number >= 0"),
    (["--batch-size", "x"], "--batch-size: 'x' is not a valid int"),
])
def test_invalid_flags_are_rejected(flags, message):
    result = run_train_py(*flags)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_train_py_without_data_is_a_one_line_error(tmp_path):
    result = run_train_py("--data-dir", str(tmp_path / "empty"), "--export-dir",
                          str(tmp_path / "model"), "--train-dir", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: MNIST is not prepared")
    assert not (tmp_path / "model").exists()


def test_train_py_trains_and_exports(tmp_path, data_dir, mnist_dir):
    result = run_train_py("--epochs", "1", "--steps-per-epoch", "3", "--batch-size", "16",
                          "--eval-digits", "200", "--lambda", "0.01", "--mnist-dir",
                          str(mnist_dir), "--data-dir", str(data_dir), "--train-dir",
                          str(tmp_path / "run"), "--export-dir", str(tmp_path / "model"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Test metrics on 200 digits" in result.stdout
    assert f"SavedModel: {tmp_path / 'model'}" in result.stdout
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert {"mse", "psnr", "w1", "bits", "nominal_bits"} <= set(metrics)
    assert list((tmp_path / "run" / "logs" / "train").glob("events.out.tfevents.*"))
    # An existing export is never overwritten without --overwrite.
    again = run_train_py("--epochs", "1", "--steps-per-epoch", "1", "--data-dir",
                         str(data_dir), "--export-dir", str(tmp_path / "model"))
    assert again.returncode == 2 and "--overwrite" in again.stderr


class Interrupt(Exception):
    pass


class InterruptAtEpoch(tf.keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Interrupt()


class RecordEpochs(tf.keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)

    def on_train_end(self, logs=None):
        self.iterations = (int(self.model.generator_optimizer.iterations),
                           int(self.model.critic_optimizer.iterations))


def test_interrupted_training_resumes_from_its_backup(tmp_path, data_dir):
    args = train_args(tmp_path, data_dir, "--epochs", "3", "--steps-per-epoch", "2",
                      "--critic-steps", "2")
    with pytest.raises(Interrupt):
        run(args, extra_callbacks=[InterruptAtEpoch(2)], verbose=0)
    assert (tmp_path / "run" / "backup").is_dir()
    assert not (tmp_path / "model").exists()

    record = RecordEpochs()
    metadata, export_dir = run(args, extra_callbacks=[record], verbose=0)
    assert record.epochs == [2]
    # Both optimizers continue from their saved state: 3 epochs x 2 steps in all.
    assert record.iterations == (6, 12)
    assert export_dir.is_dir() and metadata["training"]["epochs"] == 3
    assert not (tmp_path / "run" / "backup").exists()  # removed once training finished


def test_frozen_encoder_trains_a_new_decoder_on_the_same_symbols(trained, tmp_path, data_dir):
    from tfrdp import codec
    _, source_dir = trained
    args = train_args(tmp_path, data_dir, "--lambda", "0.02", "--freeze-encoder",
                      str(source_dir))
    metadata, export_dir = run(args, verbose=0)
    assert export_dir.name == "model" and metadata["training"]["freeze_encoder"] == \
        str(source_dir)
    digits = data.load_images("test", data_dir=data_dir, limit=500)
    source, frozen = codec.Codec(source_dir), codec.Codec(export_dir)
    symbols = [model.saved_model.signatures["encode"](images=tf.constant(digits))["symbols"]
               for model in (source, frozen)]
    assert np.array_equal(symbols[0], symbols[1])  # the encoder did not move
    assert not np.array_equal(source.reconstruct(digits, 1), frozen.reconstruct(digits, 1))
    assert metadata["fingerprint"] != source.fingerprint  # a new decoder


def test_frozen_encoder_must_match_the_latent_size(trained, tmp_path, data_dir):
    _, source_dir = trained
    result = run_train_py("--freeze-encoder", str(source_dir), "--levels", "4", "--data-dir",
                          str(data_dir), "--export-dir", str(tmp_path / "model"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: --freeze-encoder {source_dir} has d=3, L=3; pass --latent-dim 3 --levels 3")
    result = run_train_py("--freeze-encoder", str(tmp_path), "--data-dir", str(data_dir),
                          "--export-dir", str(tmp_path / "model"))
    assert result.returncode == 2 and "is not a tfrdp SavedModel" in result.stderr
