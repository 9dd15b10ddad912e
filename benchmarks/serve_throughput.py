#!/usr/bin/env python3
"""Requests/s and latency of single-digit :compress on `tfrdp serve` over loopback.

    python benchmarks/serve_throughput.py --model-dir saved_models --model mnist_d3_L3_lambda0

Starts the server as a subprocess on a free loopback port, then runs `--clients`
concurrent clients, each POSTing one 28x28 PNG digit per request, for
`--requests` requests in all (bounded, and it stops by itself).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=Path("saved_models"))
    parser.add_argument("--model", required=True, help="model folder name under --model-dir")
    parser.add_argument("--mnist-idx", type=Path,
                        default=Path("../shared/data/mnist/t10k-images-idx3-ubyte.gz"))
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=1000, help="requests per client count")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    import tensorflow as tf
    from tfrdp.imageio import read_digits
    digits = read_digits(args.mnist_idx)[:256]
    bodies = [tf.io.encode_png(d).numpy() for d in digits]

    log = tempfile.TemporaryFile("w+")
    server = subprocess.Popen(
        [sys.executable, "-m", "tfrdp", "serve", "--model-dir", str(args.model_dir),
         "--port", "0"], stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        address = server.stdout.readline().split("http://")[1].split("/")[0]
        url = f"http://{address}/v1/models/{args.model}:compress?seed=1"

        def one(i):
            started = time.perf_counter()
            request = urllib.request.Request(url, data=bodies[i % len(bodies)], method="POST")
            with urllib.request.urlopen(request, timeout=60) as answer:
                assert answer.status == 200 and answer.read()[:4] == b"TRDP"
            return time.perf_counter() - started

        for _ in ThreadPoolExecutor(4).map(one, range(20)):  # warm up
            pass
        results = []
        for clients in args.clients:
            started = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                latencies = np.array(list(pool.map(one, range(args.requests))))
            seconds = time.perf_counter() - started
            row = {"clients": clients, "requests": args.requests,
                   "requests_per_s": args.requests / seconds,
                   "p50_ms": 1000 * float(np.percentile(latencies, 50)),
                   "p99_ms": 1000 * float(np.percentile(latencies, 99))}
            results.append(row)
            print(f"clients {clients:3d}: {row['requests_per_s']:8.1f} requests/s  "
                  f"p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
