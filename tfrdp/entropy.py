"""Entropy coding of the L-level latent with tensorflow-compression.

During training a learned per-dimension categorical prior gives the rate
estimate. For compression its probabilities become a range-coding table for
`tfc.ContinuousBatchedEntropyModel`, which codes a whole batch of symbols
[N, d] as ONE string (per-digit strings would cost a byte or more each).
"""

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

RANGE_CODER_PRECISION = 16  # the range coder's maximum; keeps table overhead tiny
TABLE_LEARNED = b"\x00"
TABLE_UNIFORM = b"\x01"


class CategoricalPrior(tf.keras.layers.Layer):
    """A learned categorical distribution over the L levels of each latent dimension."""

    def __init__(self, latent_dim, levels, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = latent_dim
        self.levels = levels
        self.logits = self.add_weight(
            name="logits", shape=(latent_dim, levels), initializer="zeros")

    def neg_log2_pmf(self):
        """-log2 p[j, k] of level k in dimension j, shape [d, L]."""
        return -tf.nn.log_softmax(self.logits, axis=-1) / tf.math.log(2.0)

    def pmf(self):
        return tf.nn.softmax(self.logits, axis=-1)

    def nll_bits(self, symbols):
        """Bits per digit [N] of integer-valued symbols [N, d]; trains the prior only."""
        symbols = tf.stop_gradient(tf.cast(symbols, tf.int32))
        table = self.neg_log2_pmf()
        return tf.reduce_sum(tf.one_hot(symbols, self.levels) * table, axis=[-2, -1])

    def bits(self, continuous_levels):
        """Bits per digit [N] of round(continuous_levels), differentiable in the levels.

        The value is the exact code length of the rounded symbols. Its gradient
        is that of the code length interpolated linearly between neighbouring
        levels, so a rate penalty can steer the encoder; it does not train the
        prior (that is `nll_bits`).
        """
        table = tf.stop_gradient(self.neg_log2_pmf())
        u = tf.clip_by_value(continuous_levels, 0.0, self.levels - 1.0)
        lower = tf.clip_by_value(tf.floor(u), 0.0, self.levels - 2.0)
        fraction = u - lower
        lower_bits = tf.reduce_sum(
            tf.one_hot(tf.cast(lower, tf.int32), self.levels) * table, axis=-1)
        upper_bits = tf.reduce_sum(
            tf.one_hot(tf.cast(lower, tf.int32) + 1, self.levels) * table, axis=-1)
        interpolated = tf.reduce_sum(
            (1.0 - fraction) * lower_bits + fraction * upper_bits, axis=-1)
        exact = tf.reduce_sum(
            tf.one_hot(tf.cast(tf.round(u), tf.int32), self.levels) * table, axis=[-2, -1])
        return interpolated + tf.stop_gradient(exact - interpolated)


def cdf_table(pmf):
    """Range-coding table for tfc from a [d, L] pmf (same layout tfc builds itself)."""
    pmf = tf.convert_to_tensor(pmf, tf.float32)
    rows = []
    for row in tf.unstack(pmf):
        overflow = tf.zeros([1])  # symbols are always within 0..L-1
        cdf = tfc.pmf_to_quantized_cdf(tf.concat([row, overflow], 0),
                                       precision=RANGE_CODER_PRECISION)
        rows.append(tf.concat([[-RANGE_CODER_PRECISION], cdf], 0))
    return tf.concat(rows, 0)


def batch_entropy_model(pmf):
    """An entropy model coding integer symbols [N, d] under `pmf` as one string."""
    latent_dim = int(pmf.shape[0])
    return tfc.ContinuousBatchedEntropyModel(
        cdf=cdf_table(pmf), cdf_offset=tf.zeros([latent_dim], tf.int32),
        prior_shape=(latent_dim,), coding_rank=2, compression=True,
        offset_heuristic=False, range_coder_precision=RANGE_CODER_PRECISION)


class SymbolCoder(tf.Module):
    """Codes symbols [N, d] with the learned table, or a uniform one if shorter.

    The first byte of the string names the table. The uniform fallback bounds
    every string by the nominal d*log2(L) bits per digit plus a few bytes,
    whatever the input, e.g. digits unlike the ones the prior was fitted on.
    """

    def __init__(self, pmf, name="symbol_coder"):
        super().__init__(name=name)
        pmf = np.asarray(pmf, np.float32)
        self.learned = batch_entropy_model(pmf)
        self.uniform = batch_entropy_model(np.full_like(pmf, 1.0 / pmf.shape[1]))

    def compress(self, symbols):
        symbols = tf.cast(symbols, tf.float32)
        learned = TABLE_LEARNED + self.learned.compress(symbols)
        uniform = TABLE_UNIFORM + self.uniform.compress(symbols)
        shorter = tf.strings.length(uniform) < tf.strings.length(learned)
        return tf.where(shorter, uniform, learned)

    def decompress(self, string, count):
        table = tf.strings.substr(string, 0, 1)
        payload = tf.strings.substr(string, 1, tf.strings.length(string) - 1)
        symbols = tf.cond(
            tf.equal(table, TABLE_UNIFORM),
            lambda: self.uniform.decompress(payload, [count]),
            lambda: self.learned.decompress(payload, [count]))
        return tf.cast(symbols, tf.int32)

    def tables(self):
        """The tables' integers: what a decoder must share with the encoder."""
        return [self.learned.cdf.numpy(), self.uniform.cdf.numpy()]
