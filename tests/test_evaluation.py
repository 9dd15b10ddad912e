"""Evaluation metrics on cases with known answers, and the shipped MNIST classifier."""

import numpy as np
import pytest

from conftest import REPO
from tfrdp import evaluation


def random_digits(count, seed):
    return np.random.default_rng(seed).integers(0, 256, (count, 28, 28, 1), dtype=np.uint8)


def test_distortion_of_known_images():
    black = np.zeros((3, 28, 28, 1), np.uint8)
    white = np.full((3, 28, 28, 1), 255, np.uint8)
    assert evaluation.distortion(black, white) == {"mse": 1.0, "psnr": 0.0}
    half = np.full((3, 28, 28, 1), 51, np.uint8)  # 0.2 away from black: MSE 0.04, ~13.98 dB
    result = evaluation.distortion(black, half)
    assert result["mse"] == pytest.approx(0.04)
    assert result["psnr"] == pytest.approx(10 * np.log10(1 / 0.04))


def test_sliced_w1_is_zero_for_identical_sets_and_grows_with_a_shift():
    a = np.random.default_rng(0).standard_normal((500, 20))
    assert evaluation.sliced_w1(a, a) == 0.0
    # Same set in another order: the same distribution.
    assert evaluation.sliced_w1(a, a[::-1]) == pytest.approx(0.0, abs=1e-12)
    distances = [evaluation.sliced_w1(a, a + shift) for shift in (0.1, 0.5, 1.0)]
    assert 0 < distances[0] < distances[1] < distances[2]
    # Shifting every coordinate by s moves each projection by s * sum(direction).
    assert distances[2] == pytest.approx(10 * distances[0], rel=1e-9)
    with pytest.raises(ValueError, match="equal-size"):
        evaluation.sliced_w1(a, a[:10])


def test_frechet_distance_of_identical_and_shifted_features():
    features = np.random.default_rng(1).standard_normal((2000, 8)) @ np.diag(np.arange(1, 9))
    assert evaluation.frechet_distance(features, features) == pytest.approx(0.0, abs=1e-6)
    shift = np.arange(8) / 4.0
    # Same covariance: the distance is the squared distance of the means.
    assert evaluation.frechet_distance(features, features + shift) == pytest.approx(
        np.sum(shift ** 2), rel=1e-6)
    scaled = evaluation.frechet_distance(features, features * 2)
    assert scaled > 1.0


def test_fresh_critic_w1_separates_real_from_altered_digits(data_dir):
    from tfrdp.data import load_images
    digits = load_images("test", data_dir=data_dir, limit=2000)
    train_a, train_b, test_a, test_b = digits[:500], digits[500:1000], digits[1000:1500], \
        digits[1500:]
    floor = evaluation.critic_w1(train_a, train_b, test_a, test_b, steps=150)
    # Altered digits: inverted pixels are far from any real digit.
    inverted = lambda digits: 255 - digits  # noqa: E731
    far = evaluation.critic_w1(train_a, inverted(train_b), test_a, inverted(test_b), steps=150)
    assert abs(floor) < 0.5
    assert far > 5 * max(abs(floor), 0.1)
    # Fixed seeds: the same call gives the same estimate.
    assert evaluation.critic_w1(train_a, train_b, test_a, test_b, steps=150) == floor


def test_shipped_classifier_is_at_least_99_percent_accurate(data_dir):
    from tfrdp import classifier
    from tfrdp.data import load_labeled
    model = classifier.load_classifier(REPO / "saved_models" / "mnist_classifier")
    digits, labels = load_labeled("test", data_dir=data_dir)
    assert classifier.accuracy_on(model, digits, labels) >= 0.99
    logits, features = classifier.logits_and_features(model, digits[:10])
    assert logits.shape == (10, 10) and features.shape == (10, classifier.FEATURES)


def test_missing_classifier_is_a_clear_error(tmp_path):
    from tfrdp import classifier
    from tfrdp.errors import TfrdpError
    with pytest.raises(TfrdpError, match="tfrdp train-classifier"):
        classifier.load_classifier(tmp_path)
