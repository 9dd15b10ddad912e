"""Training beyond one device, in other precisions and compiled with XLA (on CPU)."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import MNIST_DIR, REPO, run_python, train_args
from tfrdp import codec, fileformat
from tfrdp.training import run

# Trains a few steps with `--strategy STRATEGY` on two logical CPU devices and
# prints every step's logs. Logical devices must be set before TF starts, hence
# a fresh interpreter.
TRAIN_AND_LOG = """
import json, sys
from pathlib import Path
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tfrdp.training import build_parser, run
data_dir, out, strategy = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
args = build_parser().parse_args([
    "--data-dir", data_dir, "--train-dir", str(out / "run"), "--export-dir", str(out / "model"),
    "--epochs", "1", "--steps-per-epoch", "4", "--batch-size", "32", "--eval-digits", "256",
    "--lambda", "0.01", "--strategy", strategy])
logs = []
class Keep(tf.keras.callbacks.Callback):
    def on_train_batch_end(self, batch, step_logs=None):
        logs.append({key: float(value) for key, value in step_logs.items()})
metadata, _ = run(args, extra_callbacks=[Keep()], verbose=0)
print(json.dumps({"logs": logs, "replicas": metadata["training"]["replicas"],
                  "metrics": metadata["test_metrics"]}))
"""


def train_and_log(data_dir, out, strategy):
    result = run_python(TRAIN_AND_LOG, data_dir, out, strategy)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_mirrored_training_on_two_devices_matches_one_device(data_dir, tmp_path):
    one = train_and_log(data_dir, tmp_path / "one", "default")
    two = train_and_log(data_dir, tmp_path / "two", "mirrored")
    assert (one["replicas"], two["replicas"]) == (1, 2)
    assert len(one["logs"]) == len(two["logs"]) == 4
    # The same batches, noise and interpolation weights reach each example, batch
    # norm sees the global batch and the losses are scaled to it: only float
    # rounding differs (it grows a little with every update).
    for step, (single, mirrored) in enumerate(zip(one["logs"], two["logs"])):
        for name in ("critic_loss", "gradient_penalty", "generator_loss", "mse", "w1", "bits"):
            tolerance = 1e-5 if step == 0 else 1e-3
            assert mirrored[name] == pytest.approx(single[name], rel=tolerance, abs=tolerance), \
                (step, name)
    # Training moved: later steps differ from the first.
    assert one["logs"][-1]["mse"] < one["logs"][0]["mse"]
    assert two["metrics"]["mse"] == pytest.approx(one["metrics"]["mse"], rel=1e-3)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_round_trip(export_dir, data_dir):
    from tfrdp.data import load_images
    model = codec.Codec(export_dir)
    digits = load_images("test", data_dir=data_dir, limit=50)
    header, payload = fileformat.unpack(model.compress(digits, seed=5))
    assert np.array_equal(model.decompress(header, payload), model.reconstruct(digits, 5))


def test_multiworker_training_on_loopback_completes_and_exports(data_dir, tmp_path):
    workers = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    processes = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}))
        processes.append(subprocess.Popen(
            [sys.executable, "train.py", "--strategy", "multiworker", "--data-dir",
             str(data_dir), "--train-dir", str(tmp_path / "run"), "--export-dir",
             str(tmp_path / "model"), "--epochs", "2", "--steps-per-epoch", "3",
             "--batch-size", "32", "--eval-digits", "256"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [process.communicate(timeout=600) for process in processes]
    for process, (stdout, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]
    # Worker 0 is the chief: it alone reports and exports.
    assert "SavedModel:" in outputs[0][0] and "SavedModel:" not in outputs[1][0]
    metadata = json.loads((tmp_path / "model" / "assets" / "tfrdp.json").read_text())
    assert metadata["training"]["replicas"] == 2
    assert metadata["training"]["strategy"] == "multiworker"
    assert_round_trip(tmp_path / "model", data_dir)


@pytest.mark.parametrize("flag, precision", [("--mixed-precision", "mixed_bfloat16"),
                                             ("--jit", "float32")])
def test_mixed_precision_and_xla_runs_export_models_that_round_trip(flag, precision, data_dir,
                                                                    tmp_path):
    import tensorflow as tf
    metadata, export_dir = run(train_args(tmp_path, data_dir, flag), verbose=0)
    assert metadata["training"]["precision"] == precision
    assert np.isfinite(metadata["test_metrics"]["mse"])
    # The global policy is restored, and the export computes in float32.
    assert tf.keras.mixed_precision.global_policy().name == "float32"
    loaded = tf.saved_model.load(str(export_dir))
    variables = loaded.encoder.variables + loaded.decoder.variables
    assert variables and all(variable.dtype == tf.float32 for variable in variables)
    assert_round_trip(export_dir, data_dir)


def test_strategy_errors_are_one_line(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    result = subprocess.run(
        [sys.executable, "train.py", "--strategy", "multiworker", "--mnist-dir", str(MNIST_DIR),
         "--export-dir", str(tmp_path / "model")], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        "error: --strategy multiworker needs the TF_CONFIG environment variable")
    assert "Traceback" not in result.stderr
    result = subprocess.run(
        [sys.executable, "train.py", "--strategy", "unknown"], cwd=REPO, capture_output=True,
        text=True, timeout=300)
    assert result.returncode == 2 and "invalid choice: 'unknown'" in result.stderr
