"""The `tfrdp` command (also `python -m tfrdp`).

    tfrdp train ...                                          (same flags as train.py)
    tfrdp compress --model saved_models/NAME digits.npy -o digits.rdp
    tfrdp decompress digits.rdp -o digits.npy [--grid sheet.png]
    tfrdp info digits.rdp
    tfrdp serve --model-dir saved_models --port 8501

Exit codes: 0 success, 1 an error reported on one line (bad input, corrupted
file, missing or wrong model), 2 bad command-line usage, 130 interrupted.
"""

import argparse
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
