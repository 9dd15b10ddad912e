"""Rate, distortion and perception of an exported codec: the work behind `tfrdp evaluate`.

Perception is measured independently of the critic the model trained against,
three ways, each with the floor the same procedure gives for real digits:

  w1_critic   W1 estimated by a fresh WGAN-GP critic trained on real training
              digits vs reconstructions of other training digits, evaluated
              on half the test split vs reconstructions of the other half.
              Floor: the same with the originals in place of reconstructions.
  sliced_w1   sliced Wasserstein-1 distance in pixel space (no training)
              between reconstructions of the test split and a reference set of
              real training digits. Floor: the real test digits vs that set.
  fid         Fréchet distance of the MNIST classifier's features, the same
              sets as sliced_w1; `class_accuracy` says whether reconstructions
              keep their digit's class.

Every random choice (decoder noise, projections, critic initialisation and
batches) comes from fixed seeds, so an evaluation is repeatable.
"""

import dataclasses
import math

import numpy as np
import tensorflow as tf

from tfrdp import classifier as mnist_classifier
from tfrdp import data, fileformat, models
from tfrdp.rdp_model import gradient_penalty

SEED = 2019
REFERENCE_DIGITS = 10000  # real training digits that sliced_w1 and fid compare against
CRITIC_WIDTHS = (32, 64, 128)  # half the training critic: ~4x cheaper, same shape


@dataclasses.dataclass
class Settings:
    split: str = "test"
    projections: int = 1000
    critic_steps: int = 1000
    critic_batch: int = 64
    seed: int = SEED


@dataclasses.dataclass
class EvaluationData:
    """The real digits every evaluation uses, loaded once."""
    test: np.ndarray            # uint8 [N, 28, 28, 1], the split evaluated
    test_labels: np.ndarray
    reference: np.ndarray       # real training digits for sliced_w1 and fid
    critic_real: np.ndarray     # real training digits the fresh critic sees as "real"
    critic_source: np.ndarray   # other training digits, reconstructed as its "fake"
    _reference_features: dict = dataclasses.field(default_factory=dict, repr=False)

    def reference_features(self, classifier):
        """The classifier's features of the reference digits, computed once per classifier."""
        if id(classifier) not in self._reference_features:
            self._reference_features[id(classifier)] = mnist_classifier.logits_and_features(
                classifier, self.reference)[1]
        return self._reference_features[id(classifier)]

    @classmethod
    def load(cls, split="test", mnist_dir=None, data_dir=None):
        test, labels = data.load_labeled(split, mnist_dir, data_dir)
        train = data.load_images("train", mnist_dir, data_dir, limit=3 * REFERENCE_DIGITS)
        return cls(test, labels, train[:REFERENCE_DIGITS],
                   train[REFERENCE_DIGITS:2 * REFERENCE_DIGITS], train[2 * REFERENCE_DIGITS:])


def flat_pixels(digits):
    """uint8 [N,28,28,1] -> float64 [N,784] in [0,1]."""
    return np.asarray(digits, np.float64).reshape(len(digits), -1) / 255.0


def distortion(real, reconstructed):
    """MSE per pixel (pixels in [0,1]) and mean PSNR per digit in dB."""
    errors = np.mean((flat_pixels(real) - flat_pixels(reconstructed)) ** 2, axis=1)
    psnr = 10 * np.log10(1.0 / np.maximum(errors, 1e-10))
    return {"mse": float(np.mean(errors)), "psnr": float(np.mean(psnr))}


def sliced_w1(a, b, projections=1000, seed=SEED):
    """Sliced Wasserstein-1 distance between two equal-size sets of vectors [N, D].

    The mean over random unit directions of the 1-D W1 distance between the
    projected sets, which for equal sizes is the mean gap between sorted values.
    """
    if len(a) != len(b):
        raise ValueError(f"sliced_w1 needs equal-size sets, got {len(a)} and {len(b)}")
    directions = np.random.default_rng(seed).standard_normal((a.shape[1], projections))
    directions /= np.linalg.norm(directions, axis=0, keepdims=True)
    projected_a = np.sort(a @ directions, axis=0)
    projected_b = np.sort(b @ directions, axis=0)
    return float(np.mean(np.abs(projected_a - projected_b)))


def frechet_distance(features_a, features_b):
    """||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^(1/2)) of two feature sets."""
    mean_a, mean_b = features_a.mean(axis=0), features_b.mean(axis=0)
    cov_a = np.cov(features_a, rowvar=False)
    cov_b = np.cov(features_b, rowvar=False)
    # Tr((C_a C_b)^(1/2)) = sum of sqrt eigenvalues of C_a^(1/2) C_b C_a^(1/2),
    # a symmetric PSD matrix: no general matrix square root needed.
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_root = np.sum(np.sqrt(np.clip(middle, 0, None)))
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b)
                 - 2 * trace_root)


def critic_w1(train_real, train_other, test_real, test_other, steps=1000, batch=64, seed=SEED):
    """W1 estimate of a fresh WGAN-GP critic trained to tell `train_real` from `train_other`.

    The critic (the training critic's shape at half width) is trained with the
    gradient penalty for `steps` Adam updates, then scores the held-out sets:
    E[f(test_real)] - E[f(test_other)].
    """
    tf.keras.utils.set_random_seed(seed)
    critic = models.make_critic(CRITIC_WIDTHS, name="evaluation_critic")
    optimizer = tf.keras.optimizers.Adam(2e-4, beta_1=0.5, beta_2=0.9)
    real = tf.constant(train_real, tf.uint8)
    other = tf.constant(train_other, tf.uint8)

    @tf.function
    def step(index):
        rng_seed = tf.stack([tf.constant(seed, tf.int64), tf.cast(index, tf.int64)])
        pick_real = tf.random.stateless_uniform([batch], rng_seed, 0, len(train_real), tf.int32)
        pick_other = tf.random.stateless_uniform([batch], rng_seed + 1, 0, len(train_other),
                                                 tf.int32)
        x = tf.cast(tf.gather(real, pick_real), tf.float32) / 255.0
        y = tf.cast(tf.gather(other, pick_other), tf.float32) / 255.0
        alpha = tf.random.stateless_uniform([batch, 1, 1, 1], rng_seed + 2)
        with tf.GradientTape() as tape:
            scores = critic(tf.concat([x, y], 0), training=True)
            estimate = tf.reduce_mean(scores[:batch]) - tf.reduce_mean(scores[batch:])
            loss = -estimate + 10.0 * gradient_penalty(critic, x, y, alpha)
        variables = critic.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))

    for index in range(steps):
        step(tf.constant(index))

    def mean_score(digits):
        scores = critic.predict(np.asarray(digits, np.float32) / 255.0, batch_size=1000,
                                verbose=0)
        return float(np.mean(scores))

    return mean_score(test_real) - mean_score(test_other)


def floors(eval_data, classifier, settings=Settings()):
    """What each perception measure gives for real digits in place of reconstructions."""
    test, half = eval_data.test, len(eval_data.test) // 2
    reference_features = eval_data.reference_features(classifier)
    _, test_features = mnist_classifier.logits_and_features(classifier, test)
    count = min(len(test), len(eval_data.reference))
    return {
        "w1_critic": critic_w1(eval_data.critic_real, eval_data.critic_source, test[:half],
                               test[half:], settings.critic_steps, settings.critic_batch,
                               settings.seed),
        "sliced_w1": sliced_w1(flat_pixels(test[:count]), flat_pixels(eval_data.reference[:count]),
                               settings.projections, settings.seed),
        "fid": frechet_distance(test_features, reference_features),
        "class_accuracy": mnist_classifier.accuracy_on(classifier, test, eval_data.test_labels),
    }


def rate(codec, digits, seed):
    """File, payload and estimated bits/digit of coding `digits` as one file."""
    content = codec.compress(digits, seed)
    _, payload = fileformat.unpack(content)
    symbols = codec.saved_model.signatures["encode"](images=tf.constant(digits))["symbols"]
    pmf = np.asarray(codec.metadata["prior_pmf"], np.float64)  # [d, L]
    symbols = symbols.numpy()
    dims = np.arange(pmf.shape[0])[None, :]
    estimated = -np.sum(np.log2(pmf[dims, symbols])) / len(digits)
    return {"file_bits": 8 * len(content) / len(digits),
            "payload_bits": 8 * len(payload) / len(digits),
            "estimated_bits": float(estimated),
            "nominal_bits": codec.metadata["latent_dim"] * math.log2(codec.metadata["levels"])}


def evaluate(codec, eval_data, classifier, settings=Settings()):
    """All metrics of one exported codec (see the module docstring)."""
    test, half = eval_data.test, len(eval_data.test) // 2
    reconstructed = codec.reconstruct(test, settings.seed)
    critic_fakes = codec.reconstruct(eval_data.critic_source, settings.seed + 1)
    logits, features = mnist_classifier.logits_and_features(classifier, reconstructed)
    reference_features = eval_data.reference_features(classifier)
    count = min(len(test), len(eval_data.reference))
    results = {"model": codec.name, "digits": len(test), **distortion(test, reconstructed),
               **rate(codec, test, settings.seed)}
    results.update({
        "w1_critic": critic_w1(eval_data.critic_real, critic_fakes, test[:half],
                               reconstructed[half:], settings.critic_steps,
                               settings.critic_batch, settings.seed),
        "sliced_w1": sliced_w1(flat_pixels(reconstructed[:count]),
                               flat_pixels(eval_data.reference[:count]),
                               settings.projections, settings.seed),
        "fid": frechet_distance(features, reference_features),
        "class_accuracy": float(np.mean(np.argmax(logits, axis=1) == eval_data.test_labels)),
    })
    return results


ROWS = (("mse", "MSE", ".5f"), ("psnr", "PSNR (dB)", ".2f"), ("file_bits", "file bits/digit", ".3f"),
        ("payload_bits", "payload bits/digit", ".3f"),
        ("estimated_bits", "estimated bits/digit", ".3f"),
        ("nominal_bits", "nominal bits/digit", ".3f"), ("w1_critic", "W1 (fresh critic)", ".4f"),
        ("sliced_w1", "sliced W1 (pixels)", ".5f"), ("fid", "Fréchet distance", ".3f"),
        ("class_accuracy", "classifier accuracy", ".2%"))


def format_table(results, floors):
    """The metrics as a text table, with the real-vs-real floor where there is one."""
    lines = [f"{'metric':<22}{'value':>12}{'real vs real':>14}"]
    for key, label, spec in ROWS:
        floor = f"{floors[key]:{spec}}" if key in floors else ""
        lines.append(f"{label:<22}{results[key]:>12{spec}}{floor:>14}")
    return "\n".join(lines)
