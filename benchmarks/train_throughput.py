#!/usr/bin/env python3
"""Training speed of the default configuration on this machine's device.

    python benchmarks/train_throughput.py --mnist-dir ../shared/data/mnist [--mixed-precision] [--jit]

Measures, in one run:
  * the device's matmul peak (FLOP/s of 2048x2048 products, in the compute type),
  * images/s of the critic step, the generator step and the whole train_step,
    each a tf.function on one real MNIST batch, with its FLOPs counted from the
    traced graph (tfrdp.profiling) and the fraction of the peak it reaches,
  * the input pipeline alone (batches/s), which must outrun the step,
  * `fit` on the real pipeline for --fit-steps steps, projected to one epoch
    (60,000 digits); --fit-steps 937 times a whole epoch.
Prints a table and writes the figures as JSON (--json).
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def median_seconds(function, argument, repeats, rounds=5):
    """Median over `rounds` of the mean time of `repeats` calls (after a warm-up)."""
    function(argument)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(repeats):
            result = function(argument)
        _block(result)
        times.append((time.perf_counter() - started) / repeats)
    return statistics.median(times)


def _block(result):
    import tensorflow as tf
    for tensor in tf.nest.flatten(result):
        if tensor is not None:
            tensor.numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist-dir", type=Path, default=None)
    parser.add_argument("--data-dir", type=Path, default=Path(".tfds"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--jit", action="store_true")
    parser.add_argument("--repeats", type=int, default=10, help="calls per timing round")
    parser.add_argument("--fit-steps", type=int, default=100,
                        help="steps of a real `fit` to time (0: skip)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    import tensorflow as tf

    from tfrdp import data, distribute, profiling
    from tfrdp.data import SPLIT_SIZES
    from tfrdp.training import build_model, build_parser

    flags = ["--batch-size", str(args.batch_size), "--data-dir", str(args.data_dir),
             "--lr-schedule", "constant"]
    flags += ["--mnist-dir", str(args.mnist_dir)] if args.mnist_dir else []
    flags += ["--mixed-precision"] if args.mixed_precision else []
    flags += ["--jit"] if args.jit else []
    train_args = build_parser().parse_args(flags)
    policy = distribute.mixed_precision_policy() if args.mixed_precision else "float32"
    compute_dtype = tf.keras.mixed_precision.Policy(policy).compute_dtype

    peak = profiling.matmul_peak(tf.as_dtype(compute_dtype))
    dataset = data.mnist_dataset("train", args.batch_size, args.mnist_dir, args.data_dir,
                                 training=True, seed=0)
    images = next(iter(dataset))

    strategy = tf.distribute.get_strategy()
    steps_per_epoch = SPLIT_SIZES["train"] // args.batch_size
    model = build_model(train_args, strategy, policy, steps_per_epoch)
    spec = tf.TensorSpec(images.shape, images.dtype)
    figures = {"device": profiling.device_name(), "batch_size": args.batch_size, "precision": policy,
               "jit": args.jit, "matmul_peak_gflops": peak / 1e9, "steps": {}}
    for name in ("critic_step", "generator_step", "train_step"):
        traced = tf.function(getattr(model, name))
        _, flops = profiling.step_flops(traced, spec)
        step = tf.function(getattr(model, name), jit_compile=args.jit)
        seconds = median_seconds(step, images, args.repeats)
        figures["steps"][name] = {
            "ms": seconds * 1e3, "images_per_s": args.batch_size / seconds,
            "gflop": flops / 1e9, "gflops_per_s": flops / seconds / 1e9,
            "fraction_of_peak": flops / seconds / peak}

    iterator = iter(dataset)
    batches = 200
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    figures["input_pipeline_batches_per_s"] = batches / (time.perf_counter() - started)

    if args.fit_steps:
        # Resets by Keras callbacks would hide nothing here: timing starts after
        # the first step, which traces the train function.
        times = []

        class StepTimer(tf.keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                times.append(time.perf_counter())

        fresh = build_model(train_args, strategy, policy, steps_per_epoch)
        fresh.fit(dataset, epochs=1, steps_per_epoch=args.fit_steps + 1,
                  callbacks=[StepTimer()], verbose=0)
        per_step = (times[-1] - times[0]) / args.fit_steps
        figures["fit"] = {"steps_timed": args.fit_steps, "ms_per_step": per_step * 1e3,
                          "epoch_seconds": per_step * steps_per_epoch,
                          "steps_per_epoch": steps_per_epoch}

    print(f"device: {figures['device']}   precision: {policy}   jit: {args.jit}   "
          f"batch: {args.batch_size}")
    print(f"matmul peak ({compute_dtype}): {peak / 1e9:.0f} GFLOP/s")
    print(f"{'step':<16}{'ms':>8}{'images/s':>10}{'GFLOP':>8}{'GFLOP/s':>9}{'of peak':>9}")
    for name, row in figures["steps"].items():
        print(f"{name:<16}{row['ms']:8.1f}{row['images_per_s']:10.0f}{row['gflop']:8.1f}"
              f"{row['gflops_per_s']:9.0f}{row['fraction_of_peak']:9.0%}")
    print(f"input pipeline: {figures['input_pipeline_batches_per_s']:.0f} batches/s")
    if "fit" in figures:
        fit = figures["fit"]
        print(f"fit: {fit['ms_per_step']:.1f} ms/step over {fit['steps_timed']} steps -> "
              f"{fit['epoch_seconds']:.0f} s per epoch of {fit['steps_per_epoch']} steps")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
