"""The `tfrdp` command (also `python -m tfrdp`).

    tfrdp train ...                                          (same flags as train.py)
    tfrdp compress --model saved_models/NAME digits.npy -o digits.rdp
    tfrdp decompress digits.rdp -o digits.npy [--grid sheet.png]
    tfrdp info digits.rdp
    tfrdp serve --model-dir saved_models --port 8501
    tfrdp evaluate --model saved_models/NAME --mnist-dir DIR [--json results.json]
    tfrdp sweep --rates 1x4,3x3 --lambdas 0,0.01 --out results/mnist --epochs 2
    tfrdp train-classifier --mnist-dir DIR      (once: the classifier evaluate uses)

Exit codes: 0 success, 1 an error reported on one line (bad input, corrupted
file, missing or wrong model), 2 bad command-line usage, 130 interrupted.
"""

import argparse
import json
import os
import secrets
import sys
import time
from pathlib import Path

from tfrdp import __version__
from tfrdp.errors import TfrdpError

EXIT_ERROR = 1


def _seed(text):
    from tfrdp.fileformat import MAX_SEED
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and {MAX_SEED}")
    return value


def _default_output(source, suffix):
    source = Path(source)
    return source.with_name(source.name.rstrip("/") + suffix) if source.is_dir() \
        else source.with_suffix(suffix)


def compress(args):
    from tfrdp import codec, fileformat, fsutil, imageio
    output = args.output or _default_output(args.input, ".rdp")
    fsutil.check_writable(output, args.overwrite, inputs=[args.input])
    digits = imageio.read_digits(args.input)
    model = codec.Codec(args.model)
    seed = secrets.randbelow(2**32) if args.seed is None else args.seed
    started = time.perf_counter()
    content = model.compress(digits, seed)
    seconds = time.perf_counter() - started
    fsutil.write_bytes_atomic(output, content)
    header, payload = fileformat.unpack(content)
    meta = model.metadata
    print(f"{output}: {header.count} digits in {len(content)} bytes, "
          f"{codec.bits_per_digit(len(content), header.count):.3f} bits/digit "
          f"(payload {codec.bits_per_digit(len(payload), header.count):.3f}; model nominal "
          f"{meta['nominal_bits_per_digit']:.3f}, estimated "
          f"{meta['estimated_bits_per_digit']:.3f}); "
          f"{header.count / seconds:,.0f} digits/s")


def decompress(args):
    from tfrdp import codec, fsutil, imageio
    output = args.output or (None if args.grid else _default_output(args.input, ".npy"))
    for path in filter(None, [output, args.grid]):
        fsutil.check_writable(path, args.overwrite, inputs=[args.input])
    header, payload = codec.read_file(args.input)
    model = codec.model_for(header, args.model, args.model_dir)
    started = time.perf_counter()
    digits = model.decompress(header, payload)
    seconds = time.perf_counter() - started
    if output:
        imageio.write_digits(digits, output)
    if args.grid:
        imageio.write_grid(digits, args.grid)
    written = " and ".join(str(p) for p in filter(None, [output, args.grid]))
    print(f"{written}: {header.count} digits decoded with {model.path}; "
          f"{header.count / seconds:,.0f} digits/s")


def info(args):
    from tfrdp import codec
    header, payload = codec.read_file(args.input)
    fields = codec.file_report(args.input, header, payload)
    width = max(map(len, fields))
    for key, value in fields.items():
        print(f"{key + ':':<{width + 1}} {value}")


def export_transforms(args):
    from tfrdp import codec, export, fsutil
    codec.Codec(args.model)  # checks it is a tfrdp SavedModel
    target = Path(args.model) / export.TRANSFORMS_DIR
    fsutil.check_writable(target, args.overwrite)
    target.parent.mkdir(exist_ok=True)
    with fsutil.staged_path(target) as staging:
        export.save_transforms(args.model, staging)
    print(f"{target}: encode, decode and reconstruct without custom ops")


def serve(args):
    from tfrdp import serving
    serving.serve(args.model_dir, args.host, args.port, args.max_request_bytes)


def evaluate(args):
    from tfrdp import classifier, codec, evaluation, fsutil
    if args.json:
        fsutil.check_writable(args.json, args.overwrite)
    model = codec.Codec(args.model)
    judge = classifier.load_classifier(args.classifier)
    settings = evaluation.Settings(split=args.split, critic_steps=args.critic_steps)
    eval_data = evaluation.EvaluationData.load(args.split, args.mnist_dir, args.data_dir)
    print(f"evaluating {model.path} on {len(eval_data.test):,} {args.split} digits "
          f"(the fresh critic trains {args.critic_steps} steps)", flush=True)
    results = evaluation.evaluate(model, eval_data, judge, settings)
    floors = evaluation.floors(eval_data, judge, settings) if args.floors else {}
    print(evaluation.format_table(results, floors))
    if args.json:
        fsutil.write_bytes_atomic(args.json, (json.dumps(
            {"metrics": results, "floors": floors}, indent=2) + "\n").encode())
        print(f"wrote {args.json}")


def sweep(args):
    from tfrdp import sweep as sweeps
    sweeps.run(args)


def train_classifier(args):
    from tfrdp import classifier
    accuracy = classifier.train_classifier(args.out, args.mnist_dir, args.data_dir,
                                           epochs=args.epochs, overwrite=args.overwrite)
    print(f"{args.out}: test accuracy {accuracy:.2%}")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tfrdp", description="Learned lossy compression of MNIST digits under the "
        "rate-distortion-perception tradeoff.")
    parser.add_argument("--version", action="version", version=f"tfrdp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("train", add_help=False,
                        help="train a codec and export a SavedModel (see 'tfrdp train --help')")

    command = commands.add_parser(
        "compress", help="compress digits into a .rdp file",
        description="Compress 28x28 grayscale digits (a PNG, a folder of PNGs, a .npy array "
        "uint8 [N,28,28(,1)], or an MNIST IDX image file) into one .rdp file.")
    command.add_argument("input", type=Path, help="digits to compress")
    command.add_argument("-o", "--output", type=Path,
                         help="the .rdp file (default: INPUT with suffix .rdp)")
    command.add_argument("--model", type=Path, required=True, help="SavedModel folder")
    command.add_argument("--seed", type=_seed, default=None,
                         help="decoder noise seed stored in the file (default: random)")
    command.add_argument("--overwrite", action="store_true", help="replace an existing output")
    command.set_defaults(run=compress)

    command = commands.add_parser(
        "decompress", help="decode a .rdp file to digits",
        description="Decode a .rdp file. The output's form follows its name: NAME.npy (uint8 "
        "[N,28,28,1]), NAME.png (one digit), or a folder of PNGs.")
    command.add_argument("input", type=Path, help="the .rdp file")
    command.add_argument("-o", "--output", type=Path,
                         help="output .npy, .png or folder (default: INPUT with suffix .npy, "
                         "unless only --grid is asked for)")
    command.add_argument("--grid", type=Path, help="also write a contact-sheet PNG of the digits")
    command.add_argument("--model", type=Path,
                         help="SavedModel folder (default: the model named in the file, "
                         "under --model-dir)")
    command.add_argument("--model-dir", type=Path, default=Path("saved_models"),
                         help="where models are looked up by name")
    command.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    command.set_defaults(run=decompress)

    command = commands.add_parser("info", help="describe a .rdp file",
                                  description="Print a .rdp file's header, size and rate.")
    command.add_argument("input", type=Path, help="the .rdp file")
    command.set_defaults(run=info)

    command = commands.add_parser(
        "export-transforms", help="write a model's custom-op-free export for stock TF Serving",
        description="Write MODEL/transforms/1: encode, decode and reconstruct in a SavedModel "
        "that loads without tensorflow-compression (new exports already have it).")
    command.add_argument("--model", type=Path, required=True, help="SavedModel folder")
    command.add_argument("--overwrite", action="store_true", help="replace an existing one")
    command.set_defaults(run=export_transforms)

    command = commands.add_parser(
        "serve", help="serve the SavedModels over TensorFlow Serving's REST API",
        description="Serve every SavedModel directly under --model-dir, by its folder name, "
        "with TensorFlow Serving's REST API (/v1/models/NAME, /metadata, :predict) plus "
        ":compress (PNG or .npy body -> .rdp file) and :decompress (.rdp -> PNG or .npy).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    command.add_argument("--model-dir", type=Path, default=Path("saved_models"),
                         help="folder of SavedModels")
    command.add_argument("--host", default="127.0.0.1", help="address to bind")
    command.add_argument("--port", type=int, default=8501, help="port (0: any free port)")
    command.add_argument("--max-request-bytes", type=int, default=16 * 2**20,
                         help="larger request bodies are answered 413")
    command.set_defaults(run=serve)

    command = commands.add_parser(
        "evaluate", help="measure a model's rate, distortion and perception",
        description="Rate (file, estimated and nominal bits/digit), distortion (MSE, PSNR) and "
        "three perception measures independent of the model's own critic (W1 of a fresh "
        "WGAN-GP critic, sliced W1 in pixel space, Fréchet distance of classifier features), "
        "plus classifier accuracy on reconstructions; with fixed seeds.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    command.add_argument("--model", type=Path, required=True, help="SavedModel folder")
    command.add_argument("--split", choices=["test", "train"], default="test")
    command.add_argument("--critic-steps", type=int, default=1000,
                         help="training steps of the fresh critic")
    command.add_argument("--no-floors", dest="floors", action="store_false",
                         help="skip the real-vs-real floors (saves a critic training)")
    command.add_argument("--classifier", type=Path, default=Path("saved_models/mnist_classifier"))
    command.add_argument("--json", type=Path, help="also write the figures here")
    command.add_argument("--overwrite", action="store_true", help="replace an existing --json")
    command.add_argument("--mnist-dir", type=Path, default=None)
    command.add_argument("--data-dir", type=Path, default=Path(".tfds"))
    command.set_defaults(run=evaluate)

    from tfrdp.sweep import add_arguments
    command = commands.add_parser(
        "sweep", help="train and evaluate a grid of rates and lambdas, and plot the tradeoff",
        description="Train, evaluate and plot every (rate, lambda) point; rerun to resume.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(command)
    command.set_defaults(run=sweep)

    command = commands.add_parser(
        "train-classifier", help="train the MNIST classifier that evaluate uses (once)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    command.add_argument("--out", type=Path, default=Path("saved_models/mnist_classifier"))
    command.add_argument("--epochs", type=int, default=3)
    command.add_argument("--overwrite", action="store_true")
    command.add_argument("--mnist-dir", type=Path, default=None)
    command.add_argument("--data-dir", type=Path, default=Path(".tfds"))
    command.set_defaults(run=train_classifier)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "train":
        # Training owns its flags; one parser serves train.py and `tfrdp train`.
        from tfrdp import training
        return training.main(argv[1:], prog="tfrdp train")
    # TensorFlow's C++ start-up chatter would bury the one line these commands print.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        args.run(args)
    except TfrdpError as error:
        print(f"tfrdp: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as error:  # e.g. a read-only folder or a full disk
        print(f"tfrdp: error: {error.filename or ''}: {error.strerror or error}",
              file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("tfrdp: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
