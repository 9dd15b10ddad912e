"""A small MNIST classifier, trained once, for judging reconstructions.

Two perception-related measures need it: whether a reconstruction keeps its
digit's class (accuracy on reconstructions of labelled test digits), and the
Fréchet distance between its penultimate features on real and reconstructed
digits (FID's recipe, with an MNIST network instead of Inception).

    tfrdp train-classifier --mnist-dir ../shared/data/mnist

writes `saved_models/mnist_classifier` (a Keras SavedModel, ~1 MB).
"""

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfrdp import data
from tfrdp.errors import TfrdpError
from tfrdp.fsutil import staged_path
from tfrdp.models import IMAGE_SHAPE

DEFAULT_CLASSIFIER_DIR = Path("saved_models/mnist_classifier")
FEATURES = 128


def build_classifier():
    """Images [N,28,28,1] in [0,1] -> (logits [N,10], features [N,128])."""
    images = tf.keras.Input(IMAGE_SHAPE)
    x = images
    for filters in (32, 64):
        x = tf.keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = tf.keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = tf.keras.layers.MaxPool2D()(x)
    x = tf.keras.layers.Flatten()(x)
    features = tf.keras.layers.Dense(FEATURES, activation="relu", name="features")(x)
    logits = tf.keras.layers.Dense(10, name="logits")(tf.keras.layers.Dropout(0.3)(features))
    return tf.keras.Model(images, [logits, features], name="mnist_classifier")


def train_classifier(out_dir=DEFAULT_CLASSIFIER_DIR, mnist_dir=None, data_dir=None, epochs=3,
                     seed=0, overwrite=False, verbose=2):
    """Trains on the training split, checks the test split, saves; returns test accuracy."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists (pass --overwrite to replace it)")
    tf.keras.utils.set_random_seed(seed)
    train_images, train_labels = data.load_labeled("train", mnist_dir, data_dir)
    test_images, test_labels = data.load_labeled("test", mnist_dir, data_dir)
    model = build_classifier()
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3),
                  loss=[tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), None],
                  metrics=[["accuracy"], []])
    model.fit(train_images / np.float32(255), train_labels, batch_size=128, epochs=epochs,
              validation_data=(test_images / np.float32(255), test_labels), verbose=verbose)
    accuracy = accuracy_on(model, test_images, test_labels)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with staged_path(out_dir) as staging:
        model.save(str(staging), save_format="tf", include_optimizer=False)
        (staging / "accuracy.json").write_text(json.dumps({"test_accuracy": accuracy}) + "\n")
    return accuracy


def load_classifier(path=DEFAULT_CLASSIFIER_DIR):
    path = Path(path)
    if not (path / "saved_model.pb").is_file():
        raise TfrdpError(f"no classifier in {path}: train it once with "
                         "`tfrdp train-classifier --mnist-dir DIR`")
    return tf.keras.models.load_model(str(path), compile=False)


def logits_and_features(classifier, digits, batch_size=1000):
    """(logits [N,10], features [N,128]) of uint8 digits [N,28,28,1]."""
    logits, features = classifier.predict(np.asarray(digits, np.float32) / 255,
                                          batch_size=batch_size, verbose=0)
    return logits, features


def accuracy_on(classifier, digits, labels):
    logits, _ = logits_and_features(classifier, digits)
    return float(np.mean(np.argmax(logits, axis=1) == labels))
