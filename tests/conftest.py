"""Shared fixtures: offline MNIST from ../shared/data/mnist and one tiny trained model."""

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
MNIST_DIR = Path(os.environ.get("TFRDP_MNIST_DIR", REPO.parent / "shared" / "data" / "mnist"))


def train_args(tmp_path, data_dir, *extra):
    """Parsed train.py flags for a tiny run (a few steps, small evaluation)."""
    from tfrdp.training import build_parser
    return build_parser().parse_args([
        "--mnist-dir", str(MNIST_DIR), "--data-dir", str(data_dir),
        "--train-dir", str(tmp_path / "run"), "--export-dir", str(tmp_path / "model"),
        "--epochs", "1", "--steps-per-epoch", "3", "--batch-size", "32",
        "--eval-digits", "500", *extra])


@pytest.fixture(scope="session")
def mnist_dir():
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"MNIST files not found in {MNIST_DIR} (set TFRDP_MNIST_DIR)")
    return MNIST_DIR


@pytest.fixture(scope="session")
def data_dir(mnist_dir, tmp_path_factory):
    """A tfds data_dir with MNIST prepared offline once per test session."""
    from tfrdp.data import prepare_mnist
    path = tmp_path_factory.mktemp("tfds")
    prepare_mnist(mnist_dir, path)
    return path


@pytest.fixture(scope="session")
def trained(data_dir, tmp_path_factory):
    """A model trained for a few steps at (d=3, L=3, lambda=0.01) and exported."""
    from tfrdp.training import run
    tmp_path = tmp_path_factory.mktemp("trained")
    args = train_args(tmp_path, data_dir, "--lambda", "0.01", "--steps-per-epoch", "20")
    metadata, export_dir = run(args, verbose=0)
    return metadata, export_dir


def run_python(code, *args, timeout=300):
    """Runs `code` in a fresh interpreter (not importing tfrdp unless it does so itself)."""
    import subprocess
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)
