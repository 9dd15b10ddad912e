"""Keras encoder, decoder (generator) and critic, and the L-level quantizer.

Sizes follow the widely used reimplementation of Blau & Michaeli's MNIST
experiment (uRDP, NeurIPS 2021): an MLP encoder with batch norm and a tanh
output, a dense-then-transposed-conv decoder, and a conv critic without
normalisation (batch norm would break the per-example gradient penalty).
"""

import tensorflow as tf

IMAGE_SHAPE = (28, 28, 1)
_LEAK = 0.2


def _dense_block(units):
    return [tf.keras.layers.Dense(units, use_bias=False),
            tf.keras.layers.BatchNormalization(),
            tf.keras.layers.LeakyReLU(_LEAK)]


def make_encoder(latent_dim):
    """Image [N,28,28,1] in [0,1] -> bounded latent [N,d] in (-1, 1)."""
    layers = [tf.keras.Input(IMAGE_SHAPE), tf.keras.layers.Flatten()]
    for units in (512, 256, 128, 128):
        layers += _dense_block(units)
    layers.append(tf.keras.layers.Dense(latent_dim, activation="tanh"))
    return tf.keras.Sequential(layers, name="encoder")


def make_decoder(latent_dim, noise_dim):
    """[dequantized latent, noise] [N, d+noise_dim] -> image [N,28,28,1] in [0,1].

    Dense 128-512, reshaped to 4x4x32, then transposed convs 64 (to 7x7),
    128 (to 14x14) and 1 (to 28x28). Kept small: the exported model is ~4 MB.
    """
    layers = [tf.keras.Input((latent_dim + noise_dim,))]
    for units in (128, 512):
        layers += _dense_block(units)
    layers.append(tf.keras.layers.Reshape((4, 4, 32)))
    for filters, kernel, strides, padding in ((64, 4, 1, "valid"), (128, 5, 2, "same")):
        layers += [tf.keras.layers.Conv2DTranspose(filters, kernel, strides=strides,
                                                   padding=padding, use_bias=False),
                   tf.keras.layers.BatchNormalization(),
                   tf.keras.layers.LeakyReLU(_LEAK)]
    layers.append(tf.keras.layers.Conv2DTranspose(1, 5, strides=2, padding="same",
                                                  activation="sigmoid"))
    return tf.keras.Sequential(layers, name="decoder")


def make_critic():
    """Image [N,28,28,1] -> scalar score [N,1] (unbounded: a WGAN critic)."""
    layers = [tf.keras.Input(IMAGE_SHAPE)]
    for filters in (64, 128, 256):
        layers += [tf.keras.layers.Conv2D(filters, 5, strides=2, padding="same"),
                   tf.keras.layers.LeakyReLU(_LEAK)]
    layers += [tf.keras.layers.Flatten(), tf.keras.layers.Dense(1)]
    return tf.keras.Sequential(layers, name="critic")


def to_levels(latent, levels):
    """Maps the bounded latent in (-1, 1) to continuous levels in (0, L-1)."""
    return (latent + 1.0) * (levels - 1) / 2.0


def quantize(continuous_levels):
    """Rounds to the integer symbols 0..L-1 with a straight-through gradient.

    The forward value is the rounded symbol; the backward pass treats rounding
    as the identity so the encoder still receives the decoder's gradient.
    """
    return continuous_levels + tf.stop_gradient(
        tf.round(continuous_levels) - continuous_levels)


def dequantize(symbols, levels):
    """Symbols 0..L-1 (any numeric dtype) -> decoder input in [-1, 1]."""
    return tf.cast(symbols, tf.float32) * (2.0 / (levels - 1)) - 1.0
