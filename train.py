#!/usr/bin/env python3
"""Train one rate-distortion-perception codec on MNIST and export a SavedModel.

    python train.py --lambda 0.01 --latent-dim 3 --levels 3 --mnist-dir ../shared/data/mnist

`python train.py --help` lists every flag with its default.
"""

import sys

from tfrdp.training import main

if __name__ == "__main__":
    sys.exit(main(prog="train.py"))
