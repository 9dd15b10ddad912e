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


def replica_rows(draw, local_count):
    """This replica's rows of `draw(global_count)`, a draw over the global batch.

    Keras splits a global batch across replicas in order, so drawing the
    global batch's random numbers on every replica and keeping its own rows
    gives each example the same noise however many replicas share the batch.
    """
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync if context is not None else 1
    if replicas == 1:
        return draw(local_count)
    start = tf.cast(context.replica_id_in_sync_group, tf.int32) * local_count
    return draw(local_count * replicas)[start:start + local_count]


def scaled_for_replicas(loss):
    """A per-replica mean loss scaled so that the summed replica gradients are the
    gradient of the global batch's mean (Keras optimizers sum across replicas)."""
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync if context is not None else 1
    return loss / replicas if replicas > 1 else loss


def minimize(optimizer, tape, loss, variables):
    """One optimizer update, with loss scaling when `optimizer` does it (float16)."""
    if isinstance(optimizer, tf.keras.mixed_precision.LossScaleOptimizer):
        # Backpropagating loss_scale instead of 1 scales every gradient, so
        # small float16 gradients do not flush to zero.
        scale = tf.cast(optimizer.loss_scale, loss.dtype)
        gradients = optimizer.get_unscaled_gradients(
            tape.gradient(loss, variables, output_gradients=scale))
    else:
        gradients = tape.gradient(loss, variables)
    optimizer.apply_gradients(zip(gradients, variables))


class RDPModel(tf.keras.Model):
    """Rate-distortion-perception codec trained with `fit` (see module docstring).

    Training noise and interpolation weights are stateless draws keyed by
    `seed`, the optimizer step and the example's place in the global batch:
    a run is reproducible and does not depend on the number of replicas.
    """

    _CRITIC_NOISE, _ALPHA, _GENERATOR_NOISE = range(3)

    def __init__(self, config=CodecConfig(), seed=0, synchronized_bn=False, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.seed = seed
        self.encoder = models.make_encoder(config.latent_dim, synchronized_bn)
        self.decoder = models.make_decoder(config.latent_dim, config.noise_dim, synchronized_bn)
        self.critic = models.make_critic()
        self.prior = CategoricalPrior(config.latent_dim, config.levels, name="prior",
                                      dtype="float32")
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

    def reconstruct(self, images, training=False, noise=None):
        """Returns (reconstructions, continuous levels), with fresh noise unless given."""
        levels = self.continuous_levels(images, training=training)
        if noise is None:
            noise = self.sample_noise(tf.shape(images)[0])
        return self.decode(models.quantize(levels), noise, training=training), levels

    def call(self, images, training=False):
        return self.reconstruct(images, training=training)[0]

    # Training.

    def _training_draw(self, images, step, stream, shape, sampler):
        """Stateless random rows for this replica's examples (see the class docstring)."""
        seed = tf.stack([tf.constant(self.seed, tf.int64),
                         tf.cast(step, tf.int64) * 4 + stream])
        return replica_rows(lambda count: sampler([count, *shape], seed=seed),
                            tf.shape(images)[0])

    def critic_step(self, images):
        step = self.critic_optimizer.iterations
        noise = self._training_draw(images, step, self._CRITIC_NOISE, [self.config.noise_dim],
                                    tf.random.stateless_normal)
        alpha = self._training_draw(images, step, self._ALPHA, [1, 1, 1],
                                    tf.random.stateless_uniform)
        fake = tf.stop_gradient(self.reconstruct(images, training=True, noise=noise)[0])
        with tf.GradientTape() as tape:
            # Real and fake digits in one batch: larger convolutions run faster,
            # and the critic has no batch statistics that could mix them.
            scores = self.critic(tf.concat([images, fake], axis=0), training=True)
            real_scores, fake_scores = tf.split(scores, 2, axis=0)
            w1 = tf.reduce_mean(real_scores) - tf.reduce_mean(fake_scores)
            penalty = gradient_penalty(self.critic, images, fake, alpha)
            loss = -w1 + self.config.gp_weight * penalty
            minimize_loss = scaled_for_replicas(loss)
        minimize(self.critic_optimizer, tape, minimize_loss, self.critic.trainable_variables)
        self.trackers["critic_loss"].update_state(loss)
        self.trackers["gradient_penalty"].update_state(penalty)
        self.trackers["w1"].update_state(w1)

    def generator_step(self, images):
        config = self.config
        noise = self._training_draw(images, self.generator_optimizer.iterations,
                                    self._GENERATOR_NOISE, [config.noise_dim],
                                    tf.random.stateless_normal)
        with tf.GradientTape() as tape:
            fake, levels = self.reconstruct(images, training=True, noise=noise)
            mse = tf.reduce_mean(tf.square(images - fake))
            # E[critic(x)] is constant here, so -E[critic(x_hat)] is W1's gradient.
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
            total = scaled_for_replicas(total)
        variables = (self.encoder.trainable_variables + self.decoder.trainable_variables
                     + self.prior.trainable_variables)
        minimize(self.generator_optimizer, tape, total, variables)
        self.trackers["generator_loss"].update_state(loss)
        self.trackers["mse"].update_state(mse)
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
        scores = self.critic(tf.concat([images, fake], axis=0))
        real_scores, fake_scores = tf.split(scores, 2, axis=0)
        w1 = tf.reduce_mean(real_scores) - tf.reduce_mean(fake_scores)
        self.trackers["mse"].update_state(squared_error)
        self.trackers["psnr"].update_state(tf.image.psnr(images, fake, max_val=1.0))
        self.trackers["w1"].update_state(w1, sample_weight=tf.cast(count, tf.float32))
        self.trackers["bits"].update_state(self.prior.bits(levels))
        names = ["mse", "psnr", "w1", "bits"]
        results = {name: self.trackers[name].result() for name in names}
        results["nominal_bits"] = tf.constant(self.config.nominal_bits, tf.float32)
        return results
