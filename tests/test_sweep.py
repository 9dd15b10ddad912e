"""`tfrdp evaluate` and `tfrdp sweep` end to end on tiny settings, and the sweep's planning."""

import csv
import json
import subprocess
import sys

import pytest

from conftest import MNIST_DIR, REPO
from tfrdp import sweep
from tfrdp.errors import TfrdpError

CLASSIFIER = REPO / "saved_models" / "mnist_classifier"


def tfrdp(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "tfrdp", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_rates_and_lambdas_are_parsed_and_checked():
    assert sweep.parse_rates("1x4,3x3") == [(1, 4), (3, 3)]
    assert sweep.parse_lambdas("0.01,0,0.01") == [0.0, 0.01]
    for bad in ("3", "3x1", "axb", "0x4"):
        with pytest.raises(TfrdpError, match="--rates"):
            sweep.parse_rates(bad)
    for bad in ("x", "-1", "nan"):
        with pytest.raises(TfrdpError, match="--lambdas"):
            sweep.parse_lambdas(bad)


def test_plan_puts_frozen_encoder_points_after_their_encoders():
    points = sweep.plan([(1, 4), (3, 3)], [0.0, 0.01], [(1, 4)])
    assert [p.name for p in points] == [
        "mnist_d1_L4_lambda0", "mnist_d1_L4_lambda0.01", "mnist_d3_L3_lambda0",
        "mnist_d3_L3_lambda0.01", "mnist_d1_L4_lambda0.01_frozen"]
    assert points[0].nominal_bits == 2.0
    with pytest.raises(TfrdpError, match="lambda 0"):
        sweep.plan([(1, 4)], [0.01], [(1, 4)])
    with pytest.raises(TfrdpError, match="not in --rates"):
        sweep.plan([(1, 4)], [0.0], [(3, 3)])


def test_evaluate_prints_a_table_and_writes_json(trained, data_dir, tmp_path):
    _, export_dir = trained
    out = tmp_path / "evaluation.json"
    result = tfrdp("evaluate", "--model", export_dir, "--data-dir", data_dir, "--critic-steps",
                   "20", "--json", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "real vs real" in result.stdout and "classifier accuracy" in result.stdout
    figures = json.loads(out.read_text())
    metrics, floors = figures["metrics"], figures["floors"]
    assert metrics["nominal_bits"] == pytest.approx(3 * 1.5849625, rel=1e-6)
    assert metrics["estimated_bits"] <= metrics["payload_bits"] + 0.1
    # A model trained for 20 steps is far from real digits; real digits are not.
    assert metrics["sliced_w1"] > 2 * floors["sliced_w1"]
    assert metrics["fid"] > 2 * floors["fid"]
    assert floors["class_accuracy"] >= 0.99 and metrics["class_accuracy"] < 0.9
    again = tfrdp("evaluate", "--model", export_dir, "--data-dir", data_dir, "--json", out)
    assert again.returncode == 1 and "--overwrite" in again.stderr


def test_evaluate_without_classifier_is_one_line(trained, data_dir, tmp_path):
    _, export_dir = trained
    result = tfrdp("evaluate", "--model", export_dir, "--data-dir", data_dir, "--classifier",
                   tmp_path / "none")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("tfrdp: error: no classifier in")
    assert "Traceback" not in result.stderr


def test_sweep_trains_evaluates_plots_and_resumes(data_dir, tmp_path):
    out = tmp_path / "sweep"
    flags = ["sweep", "--rates", "1x2", "--lambdas", "0,0.01", "--universal", "--out", out,
             "--epochs", "1", "--steps-per-epoch", "3", "--eval-critic-steps", "10", "--eval-digits", "300",
             "--mnist-dir", MNIST_DIR, "--data-dir", data_dir, "--classifier", CLASSIFIER]
    first = tfrdp(*flags)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "[3/3] trained" in first.stdout and "[3/3] evaluated" in first.stdout
    names = {"mnist_d1_L2_lambda0", "mnist_d1_L2_lambda0.01", "mnist_d1_L2_lambda0.01_frozen"}
    assert {path.name for path in (out / "models").iterdir()} == names
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert {row["name"] for row in rows} == names
    assert {row["encoder"] for row in rows} == {"end-to-end", "frozen (lambda=0)"}
    results = json.loads((out / "results.json").read_text())
    assert set(results["floors"]) == {"w1_critic", "sliced_w1", "fid", "class_accuracy"}
    for figure in ("distortion_perception.png", "rate_distortion.png",
                   "reconstructions_1x2.png"):
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Rerun: nothing is retrained or re-evaluated, except a point whose result is gone.
    (out / "points" / "mnist_d1_L2_lambda0.01.json").unlink()
    second = tfrdp(*flags)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "trained" not in second.stdout
    assert "[1/1] evaluated mnist_d1_L2_lambda0.01 " in second.stdout
    assert list(csv.DictReader((out / "results.csv").open())) == rows


def test_sweep_rejects_bad_grids_in_one_line(tmp_path):
    result = tfrdp("sweep", "--rates", "3x1", "--lambdas", "0", "--out", tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == \
        "tfrdp: error: --rates: '3x1' needs D >= 1 and L >= 2"
