"""Where and how training runs: tf.distribute strategies and mixed precision.

    default      one device (the first GPU if there is one, else the CPU)
    mirrored     synchronous data parallelism over the visible GPUs (over the
                 logical CPUs when there is no GPU and several were configured)
    multiworker  synchronous data parallelism over several machines, each with
                 its own GPUs; the cluster comes from the TF_CONFIG variable
"""

import contextlib
import json
import os

import tensorflow as tf

from tfrdp.errors import TfrdpError

def make_strategy(name):
    """The tf.distribute strategy called `name`; create it before any other TF work."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if name == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise TfrdpError("--strategy multiworker needs the TF_CONFIG environment variable "
                             "(the cluster and this worker's task; see the README)")
        try:
            json.loads(os.environ["TF_CONFIG"])
        except ValueError as error:
            raise TfrdpError(f"TF_CONFIG is not valid JSON: {error}") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise TfrdpError(f"unknown strategy {name!r}")


def is_chief(strategy):
    """True on the one worker that writes the exported model (always, outside a cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def barrier(strategy):
    """Waits for every worker of a multi-worker strategy (a no-op on one machine)."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)), axis=None)


def mixed_precision_policy():
    """float16 on GPUs (their fast type; needs loss scaling), bfloat16 on CPUs."""
    return "mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16"


@contextlib.contextmanager
def precision(policy):
    """Layers built inside compute in `policy` ("float32" or a mixed policy)."""
    previous = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        tf.keras.mixed_precision.set_global_policy(previous)


def with_loss_scaling(optimizer, policy):
    """float16 gradients underflow without loss scaling; bfloat16 has float32's range."""
    if policy == "mixed_float16":
        return tf.keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer
