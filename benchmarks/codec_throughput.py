#!/usr/bin/env python3
"""Speed of an exported codec's signatures: encode, decode, compress, decompress.

    python benchmarks/codec_throughput.py --model saved_models/mnist_d3_L3_lambda0 \
        --idx ../shared/data/mnist/t10k-images-idx3-ubyte.gz

Calls each SavedModel signature (as `tfrdp compress/decompress` and the server
do) at batch 1 and at batch 10,000 and prints the median latency and digits/s;
--json also writes the figures.
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


def latency(call, rounds):
    """Median seconds of `call()` over `rounds` calls, after one warm-up call."""
    call()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--idx", type=Path, required=True, help="MNIST IDX images (.gz or raw)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 10000])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import tensorflow as tf

    from tfrdp import codec, imageio, profiling

    model = codec.Codec(args.model).saved_model
    digits = imageio.read_digits(args.idx)
    seed = tf.constant(0, tf.int64)
    figures = {"device": profiling.device_name(), "model": args.model.name, "rows": []}
    for batch in args.batches:
        images = tf.constant(digits[:batch])
        symbols = model.encode(images)["symbols"]
        coded = model.compress(images)
        calls = {
            "encode": lambda: model.encode(images)["symbols"].numpy(),
            "decode": lambda: model.decode(symbols, seed)["images"].numpy(),
            "compress": lambda: model.compress(images)["bitstring"].numpy(),
            "decompress": lambda: model.decompress(
                coded["bitstring"], coded["count"], seed)["images"].numpy(),
        }
        rounds = 200 if batch == 1 else 5
        for name, call in calls.items():
            seconds = latency(call, rounds)
            figures["rows"].append({"signature": name, "batch": batch, "latency_ms": seconds * 1e3,
                                    "digits_per_s": batch / seconds})

    print(f"device: {figures['device']}   model: {figures['model']}")
    print(f"{'signature':<12}{'batch':>7}{'latency ms':>12}{'digits/s':>12}")
    for row in figures["rows"]:
        print(f"{row['signature']:<12}{row['batch']:>7}{row['latency_ms']:12.2f}"
              f"{row['digits_per_s']:12,.0f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
