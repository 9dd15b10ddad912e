"""The training model: encoder, quantizer, noise-fed decoder, prior and WGAN-GP critic.

`RDPModel.train_step` alternates `critic_steps` WGAN-GP critic updates with one
encoder/decoder update on

    loss = MSE(x, x_hat) + lambda * (-E[critic(x_hat)]) + rate_weight * bits,

which is Blau & Michaeli's `MSE + lambda * W1` objective: E[critic(x)] does not
depend on the encoder/decoder, so it drops out of their gradient.

Codeword search (`search_weight` > 0) adds an optimisation aid for the encoder.
Straight-through rounding only moves a digit's latent between neighbouring
cells, so the partition settles like a self-organising map, well short of the
nearest-codeword partition an MSE quantizer needs (Lloyd's condition; on MNIST
at 3x3 levels: MSE ~0.048 against ~0.043 for k-means with 27 cells). The aid
decodes every cell's noise-free codeword, finds the nearest one to each digit
and pulls the encoder's continuous levels toward it by squared error.
"""

import dataclasses
import itertools
import math

import tensorflow as tf

from tfrdp import models
from tfrdp.entropy import CategoricalPrior


@dataclasses.dataclass(frozen=True)
class CodecConfig:
    latent_dim: int = 3
    levels: int = 3
    noise_dim: int = 16
    lam: float = 0.0
    rate_weight: float = 0.0
    critic_steps: int = 1
    gp_weight: float = 10.0
    search_weight: float = 1.0

    @property
    def cells(self):
        """Number of quantization cells L^d."""
        return self.levels ** self.latent_dim

    @property
    def nominal_bits(self):
        """Bits per digit of a fixed-length code: d * log2(L)."""
        return self.latent_dim * math.log2(self.levels)


def gradient_penalty(critic, real, fake, alpha):
    """WGAN-GP penalty E[(||grad critic(x_alpha)||_2 - 1)^2], x_alpha between real and fake.

    `alpha` has shape [N, 1, 1, 1]: one interpolation weight per example.
    """
    interpolated = real + alpha * (fake - real)
    with tf.GradientTape() as tape:
        tape.watch(interpolated)
        scores = critic(interpolated, training=True)
    gradients = tape.gradient(scores, interpolated)
    norms = tf.sqrt(tf.reduce_sum(tf.square(gradients), axis=[1, 2, 3]) + 1e-12)
    return tf.reduce_mean(tf.square(norms - 1.0))


class RDPModel(tf.keras.Model):
    """Rate-distortion-perception codec trained with `fit` (see module docstring)."""

    def __init__(self, config=CodecConfig(), **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.encoder = models.make_encoder(config.latent_dim)
        self.decoder = models.make_decoder(config.latent_dim, config.noise_dim)
        self.critic = models.make_critic()
        self.prior = CategoricalPrior(config.latent_dim, config.levels, name="prior")
        names = ["critic_loss", "gradient_penalty", "generator_loss", "mse", "psnr",
                 "w1", "bits", "search"]
        self.trackers = {name: tf.keras.metrics.Mean(name=name) for name in names}

    def compile(self, generator_optimizer, critic_optimizer, **kwargs):
        super().compile(**kwargs)
        self.generator_optimizer = generator_optimizer
        self.critic_optimizer = critic_optimizer

    @property
    def metrics(self):
        return list(self.trackers.values())

    # The codec's pieces, shared with the export.

    def continuous_levels(self, images, training=False):
        return models.to_levels(self.encoder(images, training=training), self.config.levels)

    def decode(self, symbols, noise, training=False):
        latent = models.dequantize(symbols, self.config.levels)
        return self.decoder(tf.concat([latent, noise], axis=-1), training=training)

    def codeword_grid(self):
        """All L^d symbol vectors, float [L^d, d]."""
        config = self.config
        return tf.constant(list(itertools.product(range(config.levels),
                                                  repeat=config.latent_dim)), tf.float32)

    def nearest_codewords(self, images):
        """Symbols [N, d] of the cell whose noise-free decoding is nearest to each image."""
        grid = self.codeword_grid()
        noise = tf.zeros([tf.shape(grid)[0], self.config.noise_dim])
        words = tf.reshape(self.decode(grid, noise, training=False), [tf.shape(grid)[0], -1])
        flat = tf.reshape(images, [tf.shape(images)[0], -1])
        distances = (tf.reduce_sum(tf.square(words), axis=1)[None, :]
                     - 2.0 * tf.matmul(flat, words, transpose_b=True))
        return tf.stop_gradient(tf.gather(grid, tf.argmin(distances, axis=1)))

    def sample_noise(self, count):
        return tf.random.normal([count, self.config.noise_dim])

    def reconstruct(self, images, training=False):
        """Returns (reconstructions, continuous levels) with fresh decoder noise."""
        levels = self.continuous_levels(images, training=training)
        noise = self.sample_noise(tf.shape(images)[0])
        return self.decode(models.quantize(levels), noise, training=training), levels

    def call(self, images, training=False):
        return self.reconstruct(images, training=training)[0]

    # Training.

    def critic_step(self, images):
        fake = tf.stop_gradient(self.reconstruct(images, training=True)[0])
        alpha = tf.random.uniform([tf.shape(images)[0], 1, 1, 1])
        with tf.GradientTape() as tape:
            w1 = (tf.reduce_mean(self.critic(images, training=True))
                  - tf.reduce_mean(self.critic(fake, training=True)))
            penalty = gradient_penalty(self.critic, images, fake, alpha)
            loss = -w1 + self.config.gp_weight * penalty
        variables = self.critic.trainable_variables
        self.critic_optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.trackers["critic_loss"].update_state(loss)
        self.trackers["gradient_penalty"].update_state(penalty)

    def generator_step(self, images):
        config = self.config
        with tf.GradientTape() as tape:
            fake, levels = self.reconstruct(images, training=True)
            mse = tf.reduce_mean(tf.square(images - fake))
            real_score = tf.reduce_mean(self.critic(images, training=True))
            fake_score = tf.reduce_mean(self.critic(fake, training=True))
            bits = tf.reduce_mean(self.prior.bits(levels))
            loss = mse - config.lam * fake_score + config.rate_weight * bits
            # The prior learns the symbols' distribution by maximum likelihood;
            # this term has no gradient into the encoder (see CategoricalPrior).
            prior_loss = tf.reduce_mean(self.prior.nll_bits(tf.round(levels)))
            total = loss + prior_loss
            if config.search_weight > 0:
                search = tf.reduce_mean(tf.square(levels - self.nearest_codewords(images)))
                total += config.search_weight * search
                self.trackers["search"].update_state(search)
        variables = (self.encoder.trainable_variables + self.decoder.trainable_variables
                     + self.prior.trainable_variables)
        gradients = tape.gradient(total, variables)
        self.generator_optimizer.apply_gradients(zip(gradients, variables))
        self.trackers["generator_loss"].update_state(loss)
        self.trackers["mse"].update_state(mse)
        self.trackers["w1"].update_state(tf.stop_gradient(real_score - fake_score))
        self.trackers["bits"].update_state(bits)

    def train_step(self, images):
        for _ in range(self.config.critic_steps):
            self.critic_step(images)
        self.generator_step(images)
        names = ["critic_loss", "gradient_penalty", "generator_loss", "mse", "w1", "bits"]
        if self.config.search_weight > 0:
            names.append("search")
        return {name: self.trackers[name].result() for name in names}

    def test_step(self, images):
        fake, levels = self.reconstruct(images, training=False)
        count = tf.shape(images)[0]
        squared_error = tf.reduce_mean(tf.square(images - fake), axis=[1, 2, 3])
        w1 = (tf.reduce_mean(self.critic(images)) - tf.reduce_mean(self.critic(fake)))
        self.trackers["mse"].update_state(squared_error)
        self.trackers["psnr"].update_state(tf.image.psnr(images, fake, max_val=1.0))
        self.trackers["w1"].update_state(w1, sample_weight=tf.cast(count, tf.float32))
        self.trackers["bits"].update_state(self.prior.bits(levels))
        names = ["mse", "psnr", "w1", "bits"]
        results = {name: self.trackers[name].result() for name in names}
        results["nominal_bits"] = tf.constant(self.config.nominal_bits, tf.float32)
        return results
