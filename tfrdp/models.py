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
    layers.append(PixelConv2DTranspose(1, activation="sigmoid", dtype="float32"))
    return tf.keras.Sequential(layers, name="decoder")


class _PixelPhases:
    """What the two pixel-phase layers share: a fixed 5x5 stride-2 "same" geometry and
    the split of the 5x5 kernel into four 3x3 kernels, one per 2x2 pixel phase."""

    def __init__(self, filters, **kwargs):
        super().__init__(filters, 5, strides=2, padding="same", **kwargs)

    def get_config(self):
        config = super().get_config()
        for fixed in ("kernel_size", "strides", "padding"):
            del config[fixed]
        return config

    def _phase_kernels(self):
        """[3, 3, a, b] kernels for phases (0,0), (0,1), (1,0), (1,1); the kernel is [5,5,a,b]."""
        kernel = tf.pad(self.kernel, [[0, 1], [0, 1], [0, 0], [0, 0]])  # row 5 is zeros
        return [tf.gather(tf.gather(kernel, self._TAPS[py], axis=0), self._TAPS[px], axis=1)
                for py in (0, 1) for px in (0, 1)]

    def _finish(self, outputs):
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, self.bias)
        return self.activation(outputs)


class PixelConv2DTranspose(_PixelPhases, tf.keras.layers.Conv2DTranspose):
    """Conv2DTranspose(filters, 5, strides=2, padding="same"), computed as sub-pixel conv.

    Same weights, same initialisation, same function: a stride-2 transposed
    conv is four stride-1 convs, one per output pixel phase, interleaved by
    depth_to_space. TensorFlow's CPU kernel for a transposed conv with one
    output channel runs at ~13 GFLOP/s (it was 7% of a training step); the
    phase convs run at the speed of an ordinary convolution.
    """

    # Transposed-conv kernel row feeding output phase p from input offset a-1
    # (a = 0, 1, 2); index 5 is a zero row. Derived from y[2m+p] = sum over
    # i, k with 2i + k - 1 = 2m + p of x[i] * w[k] ("same" padding puts 1 before).
    _TAPS = ((3, 1, 5), (4, 2, 0))

    def call(self, inputs):
        # [3, 3, out, 4 * in] -> [3, 3, in, 4 * out], channel (phase, out) as
        # depth_to_space expects.
        kernel = tf.transpose(tf.concat(self._phase_kernels(), axis=2), [0, 1, 3, 2])
        return self._finish(tf.nn.depth_to_space(
            tf.nn.conv2d(inputs, kernel, strides=1, padding="SAME"), 2))


class PixelConv2D(_PixelPhases, tf.keras.layers.Conv2D):
    """Conv2D(filters, 5, strides=2, padding="same"), computed on 2x2 pixel blocks.

    Same weights, same initialisation, same function: space_to_depth turns the
    stride-2 conv into a stride-1 3x3 conv over the four pixel phases. The
    point is its input gradient, which the gradient penalty and the generator
    need: into one image channel TensorFlow's CPU kernel is ~15x slower than
    an ordinary convolution; into four phase channels it is not.
    """

    # Kernel row seen by input phase p at block offset a-1 (a = 0, 1, 2); 5 is
    # a zero row. From x[2m + k - 1] = phase (k-1) mod 2 of block m + (k-1)//2.
    _TAPS = ((5, 1, 3), (0, 2, 4))

    def call(self, inputs):
        kernel = tf.concat(self._phase_kernels(), axis=2)  # [3, 3, 4 * in, out]
        return self._finish(tf.nn.conv2d(tf.nn.space_to_depth(inputs, 2), kernel,
                                         strides=1, padding="SAME"))


@tf.custom_gradient
def critic_leaky_relu(features):
    """LeakyReLU whose gradient is `upstream * slope`, the slope held constant.

    The value and the first derivative are LeakyReLU's. The difference is in
    the second derivative, which the gradient penalty needs: TensorFlow's own
    LeakyReluGrad returns a tensor of zeros for the features, and the penalty's
    backward pass then pushes those zeros through every conv of the critic's
    forward pass (~12% of a training step's FLOPs). With the slope held
    constant that path does not exist; the gradients are the same.
    """
    # One slope tensor serves the three backward passes through the critic
    # (cheaper than LeakyReluGrad each time, notably in bfloat16).
    slope = tf.stop_gradient(tf.where(features > 0, tf.constant(1.0, features.dtype),
                                      tf.constant(_LEAK, features.dtype)))

    def gradient(upstream):
        return upstream * slope

    return tf.nn.leaky_relu(features, _LEAK), gradient


def make_critic(widths=(64, 128, 256), name="critic"):
    """Image [N,28,28,1] -> scalar score [N,1] (unbounded: a WGAN critic)."""
    layers = [tf.keras.Input(IMAGE_SHAPE), PixelConv2D(widths[0]),
              tf.keras.layers.Activation(critic_leaky_relu)]
    for filters in widths[1:]:
        layers += [tf.keras.layers.Conv2D(filters, 5, strides=2, padding="same"),
                   tf.keras.layers.Activation(critic_leaky_relu)]
    layers += [tf.keras.layers.Flatten(), tf.keras.layers.Dense(1, dtype="float32")]
    return tf.keras.Sequential(layers, name=name)


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
