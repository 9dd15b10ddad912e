"""The `tfrdp` command (also `python -m tfrdp`)."""

import argparse
import sys

from tfrdp import __version__


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog="tfrdp", description="Learned lossy compression under the "
        "rate-distortion-perception tradeoff.")
    parser.add_argument("--version", action="version", version=f"tfrdp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("train", add_help=False,
                        help="train a codec and export a SavedModel (see 'tfrdp train --help')")
    if argv and argv[0] == "train":
        # Training owns its flags; one parser serves train.py and `tfrdp train`.
        from tfrdp import training
        return training.main(argv[1:], prog="tfrdp train")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
