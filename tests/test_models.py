"""The quantizer, the prior, the gradient penalty and the train step (no MNIST needed)."""

import numpy as np
import pytest
import tensorflow as tf

from tfrdp import models
from tfrdp.entropy import CategoricalPrior
from tfrdp.rdp_model import CodecConfig, RDPModel, gradient_penalty


@pytest.mark.parametrize("levels", [2, 3, 4, 7])
def test_quantizer_yields_exactly_L_integer_symbols(levels):
    latent = tf.constant(np.linspace(-0.99999, 0.99999, 10001, dtype=np.float32))
    symbols = models.quantize(models.to_levels(latent, levels)).numpy()
    assert set(np.unique(symbols)) == set(range(levels))
    dequantized = models.dequantize(symbols, levels).numpy()
    assert dequantized.min() == -1.0 and dequantized.max() == 1.0


def test_encoder_symbols_are_L_levels_for_any_input():
    model = RDPModel(CodecConfig(latent_dim=4, levels=5))
    images = tf.random.uniform([256, 28, 28, 1], seed=1)
    symbols = tf.round(model.continuous_levels(images)).numpy()
    assert symbols.shape == (256, 4)
    assert symbols.min() >= 0 and symbols.max() <= 4
    assert np.array_equal(symbols, np.round(symbols))


def test_straight_through_gradient_reaches_the_encoder():
    model = RDPModel(CodecConfig(noise_dim=2))
    images = tf.random.uniform([8, 28, 28, 1], seed=2)
    with tf.GradientTape() as tape:
        fake, _ = model.reconstruct(images, training=True)
        mse = tf.reduce_mean(tf.square(images - fake))
    gradients = tape.gradient(mse, model.encoder.trainable_variables)
    assert all(g is not None for g in gradients)
    assert float(tf.linalg.global_norm(gradients)) > 0
    # Without the straight-through estimator, rounding blocks the gradient entirely.
    with tf.GradientTape() as tape:
        levels = model.continuous_levels(images, training=True)
        fake = model.decode(tf.round(levels), tf.zeros([8, 2]), training=True)
        mse = tf.reduce_mean(tf.square(images - fake))
    assert all(g is None for g in tape.gradient(mse, model.encoder.trainable_variables))


def test_prior_bits_value_is_exact_and_gradient_goes_to_the_levels_only():
    prior = CategoricalPrior(2, 3)
    prior.logits.assign(np.log([[0.5, 0.25, 0.25], [0.125, 0.375, 0.5]]))
    levels = tf.Variable([[0.2, 1.6]])
    with tf.GradientTape(persistent=True) as tape:
        bits = prior.bits(levels)
        nll = prior.nll_bits(tf.round(levels))
    # round -> symbols (0, 2): -log2(0.5) - log2(0.5) = 2 bits
    np.testing.assert_allclose(bits.numpy(), [2.0], rtol=1e-6)
    np.testing.assert_allclose(nll.numpy(), [2.0], rtol=1e-6)
    # slopes of the interpolated code length: dim 0 between levels 0 and 1: 2-1 = +1,
    # dim 1 between levels 1 and 2: log2(1/0.5) - log2(1/0.375) = -0.415
    np.testing.assert_allclose(tape.gradient(bits, levels).numpy(),
                               [[1.0, 1.0 - np.log2(1 / 0.375)]], rtol=1e-5)
    assert tape.gradient(bits, prior.logits) is None
    assert tape.gradient(nll, prior.logits) is not None


def test_prior_learns_symbol_frequencies():
    prior = CategoricalPrior(1, 3)
    optimizer = tf.keras.optimizers.Adam(0.05)
    symbols = tf.constant([[0.0]] * 6 + [[1.0]] * 3 + [[2.0]] * 1)
    for _ in range(300):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(prior.nll_bits(symbols))
        optimizer.apply_gradients(zip(tape.gradient(loss, [prior.logits]), [prior.logits]))
    np.testing.assert_allclose(prior.pmf().numpy()[0], [0.6, 0.3, 0.1], atol=0.01)


def linear_critic(weights):
    """critic(x) = <w, x> + 3: its input gradient is w everywhere."""
    critic = tf.keras.Sequential([tf.keras.Input((28, 28, 1)), tf.keras.layers.Flatten(),
                                  tf.keras.layers.Dense(1)])
    critic.layers[-1].set_weights([weights.reshape(-1, 1), np.array([3.0], np.float32)])
    return critic


@pytest.mark.parametrize("norm", [0.25, 1.0, 3.0])
def test_gradient_penalty_equals_closed_form(norm):
    rng = np.random.default_rng(0)
    weights = rng.normal(size=784).astype(np.float32)
    weights *= norm / np.linalg.norm(weights)
    critic = linear_critic(weights)
    real = tf.random.uniform([16, 28, 28, 1], seed=3)
    fake = tf.random.uniform([16, 28, 28, 1], seed=4)
    alpha = tf.random.uniform([16, 1, 1, 1], seed=5)
    penalty = gradient_penalty(critic, real, fake, alpha)
    np.testing.assert_allclose(float(penalty), (norm - 1.0) ** 2, rtol=1e-4, atol=1e-6)


def test_gradient_penalty_interpolates_per_example():
    """A critic whose input gradient depends on the input: penalty at x_alpha, not x."""
    critic = tf.keras.Sequential([tf.keras.Input((28, 28, 1)), tf.keras.layers.Lambda(
        lambda x: 0.5 * tf.reduce_sum(tf.square(x), axis=[1, 2, 3], keepdims=True)[:, :, 0, 0])])
    real = tf.zeros([2, 28, 28, 1])
    fake = tf.ones([2, 28, 28, 1])
    alpha = tf.constant([0.0, 0.5])[:, None, None, None]
    # gradient = x_alpha; norms are 0 and 0.5 * 28 = 14
    expected = ((0.0 - 1.0) ** 2 + (14.0 - 1.0) ** 2) / 2
    np.testing.assert_allclose(float(gradient_penalty(critic, real, fake, alpha)), expected,
                               rtol=1e-5)


def one_train_step(lam, seed=7, part="decoder", **config):
    """A fresh model (fixed init) after one train_step; returns one part's weights."""
    tf.keras.utils.set_random_seed(seed)
    model = RDPModel(CodecConfig(lam=lam, noise_dim=4, **config))
    model.compile(generator_optimizer=tf.keras.optimizers.Adam(1e-3, 0.5, 0.9),
                  critic_optimizer=tf.keras.optimizers.Adam(1e-4, 0.5, 0.9))
    images = tf.random.stateless_uniform([16, 28, 28, 1], seed=[1, 2])
    tf.random.set_seed(seed)
    logs = model.train_step(images)
    assert set(logs) >= {"critic_loss", "gradient_penalty", "mse", "w1", "bits"}
    return [w.numpy() for w in getattr(model, part).trainable_weights]


def test_lambda_changes_the_decoder_update():
    baseline = one_train_step(lam=0.0)
    same = one_train_step(lam=0.0)
    perceptual = one_train_step(lam=1.0)
    assert all(np.array_equal(a, b) for a, b in zip(baseline, same)), "step not reproducible"
    assert not all(np.allclose(a, b) for a, b in zip(baseline, perceptual))


def test_critic_steps_update_the_critic_only_in_the_critic_step():
    tf.keras.utils.set_random_seed(0)
    model = RDPModel(CodecConfig(critic_steps=2, noise_dim=2))
    model.compile(generator_optimizer=tf.keras.optimizers.Adam(1e-3, 0.5, 0.9),
                  critic_optimizer=tf.keras.optimizers.Adam(1e-4, 0.5, 0.9))
    images = tf.random.uniform([8, 28, 28, 1])
    model.train_step(images)
    assert int(model.critic_optimizer.iterations) == 2
    assert int(model.generator_optimizer.iterations) == 1


def test_codeword_search_finds_the_cell_that_decodes_nearest():
    model = RDPModel(CodecConfig(latent_dim=2, levels=4, noise_dim=3))
    grid = model.codeword_grid()
    assert grid.shape == (16, 2) and len({tuple(row) for row in grid.numpy()}) == 16
    words = model.decode(grid, tf.zeros([16, 3]))
    chosen = [3, 9, 14]
    noisy = tf.gather(words, chosen) + tf.random.normal([3, 28, 28, 1], stddev=1e-4, seed=0)
    np.testing.assert_array_equal(model.nearest_codewords(noisy).numpy(),
                                  tf.gather(grid, chosen).numpy())


def test_codeword_search_changes_the_encoder_update_only():
    for part, changes in (("encoder", True), ("decoder", False)):
        plain = one_train_step(0.0, part=part, search_weight=0.0)
        searched = one_train_step(0.0, part=part, search_weight=1.0)
        same = all(np.array_equal(a, b) for a, b in zip(plain, searched))
        assert same != changes, part


@pytest.mark.parametrize("channels", [1, 3])
def test_pixel_layers_compute_the_keras_convolutions_they_replace(channels):
    """Same kernel shapes, values and input gradients as Keras' own stride-2 layers."""
    cases = [(models.PixelConv2D(6), tf.keras.layers.Conv2D(6, 5, strides=2, padding="same"),
              [4, 28, 28, channels]),
             (models.PixelConv2DTranspose(channels),
              tf.keras.layers.Conv2DTranspose(channels, 5, strides=2, padding="same"),
              [4, 14, 14, 8])]
    for pixel, keras_layer, shape in cases:
        inputs = tf.random.normal(shape, seed=4)
        pixel(inputs), keras_layer(inputs)
        assert [w.shape for w in pixel.weights] == [w.shape for w in keras_layer.weights]
        keras_layer.set_weights([pixel.kernel.numpy(),
                                 np.linspace(-1, 1, pixel.bias.shape[0], dtype=np.float32)])
        pixel.set_weights(keras_layer.get_weights())
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(inputs)
            ours, theirs = pixel(inputs), keras_layer(inputs)
        np.testing.assert_allclose(ours, theirs, atol=2e-5)
        np.testing.assert_allclose(tape.gradient(ours, inputs), tape.gradient(theirs, inputs),
                                   atol=2e-5)


def plain_critic_like(critic):
    """The same critic written with stock Keras layers and LeakyReLU."""
    plain = tf.keras.Sequential([tf.keras.Input(models.IMAGE_SHAPE)] + [
        layer for filters in (64, 128, 256)
        for layer in (tf.keras.layers.Conv2D(filters, 5, strides=2, padding="same"),
                      tf.keras.layers.LeakyReLU(0.2))] + [
        tf.keras.layers.Flatten(), tf.keras.layers.Dense(1)])
    plain.set_weights(critic.get_weights())
    return plain


def test_critic_penalty_gradients_equal_the_stock_layers_with_fewer_flops():
    from tfrdp import profiling
    critic = models.make_critic()
    plain = plain_critic_like(critic)
    real = tf.random.uniform([16, 28, 28, 1], seed=5)
    fake = tf.random.uniform([16, 28, 28, 1], seed=6)
    alpha = tf.random.uniform([16, 1, 1, 1], seed=7)

    def penalty_gradients(model):
        with tf.GradientTape() as tape:
            penalty = gradient_penalty(model, real, fake, alpha)
        return penalty, tape.gradient(penalty, model.trainable_variables)

    ours, theirs = penalty_gradients(critic), penalty_gradients(plain)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-5)
    for variable, mine, stock in zip(critic.trainable_variables, ours[1], theirs[1]):
        # The penalty does not depend on the biases (the critic is piecewise
        # linear): zeros or None, depending on the path TensorFlow takes.
        mine = np.zeros(variable.shape) if mine is None else mine
        stock = np.zeros(variable.shape) if stock is None else stock
        np.testing.assert_allclose(mine, stock, rtol=1e-4, atol=1e-6)

    spec = tf.TensorSpec([16, 28, 28, 1])
    flops = {name: profiling.step_flops(tf.function(
        lambda images, model=model: penalty_gradients(model)[1]), spec)[0]
        for name, model in (("ours", critic), ("stock", plain))}
    # The stock second derivative also backpropagates zeros through the
    # forward pass: one more filter gradient per conv.
    assert flops["ours"]["Conv2DBackpropFilter"] < 0.6 * flops["stock"]["Conv2DBackpropFilter"]


def test_flop_counter_counts_matrix_products_and_convolutions():
    from tfrdp import profiling
    kernel = tf.random.normal([5, 5, 3, 8])
    matrix = tf.random.normal([20, 30])

    @tf.function
    def work(images, vectors):
        unused = tf.matmul(vectors, vectors, transpose_b=True)  # pruned: feeds nothing
        del unused
        return (tf.nn.conv2d(images, kernel, strides=2, padding="SAME"),
                tf.matmul(vectors, matrix))

    by_type, total = profiling.step_flops(
        work, tf.TensorSpec([2, 28, 28, 3]), tf.TensorSpec([7, 20]))
    assert by_type == {"Conv2D": 2 * 2 * 14 * 14 * 8 * 5 * 5 * 3, "MatMul": 2 * 7 * 20 * 30}
    assert total == sum(by_type.values())
