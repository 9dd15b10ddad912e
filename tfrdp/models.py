"""Keras encoder, decoder (generator) and critic, and the L-level quantizer.

Sizes follow the widely used reimplementation of Blau & Michaeli's MNIST
experiment (uRDP, NeurIPS 2021): an MLP encoder with batch norm and a tanh
output, a dense-then-transposed-conv decoder, and a conv critic without
normalisation (batch norm would break the per-example gradient penalty).

Under a mixed-precision policy the hidden layers compute in float16/bfloat16
while the layers that produce the latent, the pixels and the critic's score
stay float32, so the quantizer, the entropy model, the losses and the gradient
penalty see float32 tensors.
"""

import tensorflow as tf

IMAGE_SHAPE = (28, 28, 1)
_LEAK = 0.2


def _batch_norm(synchronized):
    # Synchronized across replicas, batch statistics are those of the global
    # batch, so training on several devices matches training on one.
    return tf.keras.layers.BatchNormalization(synchronized=synchronized)


def _dense_block(units, synchronized):
    return [tf.keras.layers.Dense(units, use_bias=False),
            _batch_norm(synchronized),
            tf.keras.layers.LeakyReLU(_LEAK)]


def make_encoder(latent_dim, synchronized_bn=False):
    """Image [N,28,28,1] in [0,1] -> bounded latent [N,d] in (-1, 1)."""
    layers = [tf.keras.Input(IMAGE_SHAPE), tf.keras.layers.Flatten()]
    for units in (512, 256, 128, 128):
        layers += _dense_block(units, synchronized_bn)
    layers.append(tf.keras.layers.Dense(latent_dim, activation="tanh", dtype="float32"))
    return tf.keras.Sequential(layers, name="encoder")


def make_decoder(latent_dim, noise_dim, synchronized_bn=False):
    """[dequantized latent, noise] [N, d+noise_dim] -> image [N,28,28,1] in [0,1].

    Dense 128-512, reshaped to 4x4x32, then transposed convs 64 (to 7x7),
    128 (to 14x14) and 1 (to 28x28). Kept small: the exported model is ~4 MB.
    """
    layers = [tf.keras.Input((latent_dim + noise_dim,))]
    for units in (128, 512):
        layers += _dense_block(units, synchronized_bn)
    layers.append(tf.keras.layers.Reshape((4, 4, 32)))
    for filters, kernel, strides, padding in ((64, 4, 1, "valid"), (128, 5, 2, "same")):
        layers += [tf.keras.layers.Conv2DTranspose(filters, kernel, strides=strides,
                                                   padding=padding, use_bias=False),
                   _batch_norm(synchronized_bn),
                   tf.keras.layers.LeakyReLU(_LEAK)]
    layers.append(tf.keras.layers.Conv2DTranspose(1, 5, strides=2, padding="same",
                                                  activation="sigmoid", dtype="float32"))
    return tf.keras.Sequential(layers, name="decoder")


@tf.custom_gradient
def critic_leaky_relu(features):
    """LeakyReLU whose gradient is `upstream * slope` with the slope held constant.

    The value and the first derivative are LeakyReLU's. The difference is in
    the second derivative, which the gradient penalty needs: TensorFlow's own
    LeakyReluGrad returns a tensor of zeros for the features, and the penalty's
    backward pass then pushes those zeros through every conv of the critic's
    forward pass (~12% of a training step's FLOPs). With the slope a constant,
    that path does not exist; the gradients are the same.
    """
    slope = tf.stop_gradient(tf.where(features > 0, tf.ones_like(features),
                                      tf.fill(tf.shape(features),
                                              tf.cast(_LEAK, features.dtype))))

    def gradient(upstream):
        return upstream * slope

    return tf.nn.leaky_relu(features, _LEAK), gradient


def make_critic():
    """Image [N,28,28,1] -> scalar score [N,1] (unbounded: a WGAN critic)."""
    layers = [tf.keras.Input(IMAGE_SHAPE)]
    for filters in (64, 128, 256):
        layers += [tf.keras.layers.Conv2D(filters, 5, strides=2, padding="same"),
                   tf.keras.layers.Activation(critic_leaky_relu)]
    layers += [tf.keras.layers.Flatten(), tf.keras.layers.Dense(1, dtype="float32")]
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
