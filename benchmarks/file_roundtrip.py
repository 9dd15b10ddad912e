#!/usr/bin/env python3
"""Round trip of a whole MNIST IDX file through `tfrdp compress` and `tfrdp decompress`.

    python benchmarks/file_roundtrip.py --model saved_models/mnist_d3_L3_lambda0 \
        --idx ../shared/data/mnist/t10k-images-idx3-ubyte.gz

Compresses in this process, decompresses in a separate `python -m tfrdp` process,
checks the digits equal the SavedModel's `reconstruct` with the file's seed bit for
bit, and prints bits/digit (file, payload, estimated, nominal) and digits/s.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--idx", type=Path, required=True)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from tfrdp import codec, fileformat, imageio
    digits = imageio.read_digits(args.idx)
    model = codec.Codec(args.model)
    model.compress(digits[:10], seed=0)  # warm up: trace the signature once

    with tempfile.TemporaryDirectory() as tmp:
        rdp, out = Path(tmp) / "digits.rdp", Path(tmp) / "digits.npy"
        started = time.perf_counter()
        content = model.compress(digits, seed=20261204)
        compress_seconds = time.perf_counter() - started
        rdp.write_bytes(content)
        header, payload = fileformat.unpack(content)

        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tfrdp", "decompress", str(rdp), "-o", str(out),
                        "--model", str(args.model)], check=True)
        decompress_process_seconds = time.perf_counter() - started
        decoded = np.load(out)

    started = time.perf_counter()
    again = model.decompress(header, payload)
    decompress_seconds = time.perf_counter() - started
    expected = model.reconstruct(digits, header.seed)
    count = len(digits)
    figures = {
        "digits": count,
        "file_bytes": len(content),
        "payload_bytes": len(payload),
        "overhead_bytes": len(content) - len(payload),
        "bits_per_digit_file": 8 * len(content) / count,
        "bits_per_digit_payload": 8 * len(payload) / count,
        "bits_per_digit_estimated": model.metadata["estimated_bits_per_digit"],
        "bits_per_digit_nominal": model.metadata["nominal_bits_per_digit"],
        "equal_to_reconstruct_other_process": bool(np.array_equal(decoded, expected)),
        "equal_to_reconstruct_same_process": bool(np.array_equal(again, expected)),
        "compress_digits_per_s": count / compress_seconds,
        "decompress_digits_per_s": count / decompress_seconds,
        "decompress_process_seconds_with_model_load": decompress_process_seconds,
    }
    for key, value in figures.items():
        print(f"{key:45s} {value:.4f}" if isinstance(value, float) else f"{key:45s} {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["equal_to_reconstruct_other_process"] else 1


if __name__ == "__main__":
    sys.exit(main())
