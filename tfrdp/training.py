"""Training entry point: `python train.py ...` and `tfrdp train ...`.

Trains one RDPModel with Keras `fit` (progress bar, TensorBoard logs and
BackupAndRestore resumption under --train-dir), evaluates it on the MNIST test
split and exports a SavedModel with its metrics.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

from tfrdp.data import SPLIT_SIZES
from tfrdp.errors import TfrdpError

DEFAULT_MODEL_ROOT = Path("saved_models")
DEFAULT_TRAIN_ROOT = Path("runs")
MAX_SEARCH_CELLS = 4096  # codeword search decodes every cell at each step
STRATEGIES = ("default", "mirrored", "multiworker")  # see tfrdp/distribute.py


def _typed(kind, check, requirement):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}")
        if not check(value):
            raise argparse.ArgumentTypeError(f"{text!r} must be {requirement}")
        return value
    return parse


positive_int = _typed(int, lambda v: v >= 1, "an integer >= 1")
non_negative_int = _typed(int, lambda v: v >= 0, "an integer >= 0")
levels_int = _typed(int, lambda v: v >= 2, "an integer >= 2 (L levels per latent dimension)")
non_negative_float = _typed(float, lambda v: v >= 0 and math.isfinite(v), "a finite number >= 0")
positive_float = _typed(float, lambda v: v > 0 and math.isfinite(v), "a finite number > 0")


def build_parser(prog=None):
    parser = argparse.ArgumentParser(
        prog=prog, description="Train a rate-distortion-perception codec on MNIST "
        "(loss = MSE + lambda * W1 estimate) and export it as a SavedModel.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    model = parser.add_argument_group("model")
    model.add_argument("--lambda", dest="lam", type=non_negative_float, default=0.0,
                       help="weight of the perception loss (W1 estimate) against MSE")
    model.add_argument("--latent-dim", type=positive_int, default=3,
                       help="latent dimensions d")
    model.add_argument("--levels", type=levels_int, default=3,
                       help="quantization levels L per dimension; nominal rate d*log2(L) bits")
    model.add_argument("--noise-dim", type=non_negative_int, default=16,
                       help="dimensions of the noise fed to the decoder (0: deterministic)")
    model.add_argument("--rate-weight", type=non_negative_float, default=0.0,
                       help="beta: adds beta * estimated bits/digit to the encoder loss")
    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=positive_int, default=30)
    training.add_argument("--steps-per-epoch", type=positive_int, default=None,
                          help="generator steps per epoch (default: one pass over the "
                          "60,000 training digits)")
    training.add_argument("--batch-size", type=positive_int, default=64)
    training.add_argument("--critic-steps", type=positive_int, default=1,
                          help="WGAN-GP critic updates per encoder/decoder update")
    training.add_argument("--gp-weight", type=non_negative_float, default=10.0,
                          help="weight of the critic's gradient penalty")
    training.add_argument("--search-weight", type=non_negative_float, default=1.0,
                          help="weight of the codeword-search aid that pulls the encoder "
                          "toward the nearest cell (0: plain straight-through training; "
                          f"needs L^d <= {MAX_SEARCH_CELLS})")
    training.add_argument("--learning-rate", type=positive_float, default=2e-3,
                          help="initial Adam learning rate of the encoder, decoder and prior")
    training.add_argument("--critic-learning-rate", type=positive_float, default=1e-4,
                          help="initial Adam learning rate of the critic")
    training.add_argument("--lr-schedule", choices=["cosine", "constant"], default="cosine",
                          help="cosine: both learning rates decay to 5%% over the run")
    training.add_argument("--eval-digits", type=positive_int, default=SPLIT_SIZES["test"],
                          help="test digits used for validation and the final metrics")
    training.add_argument("--seed", type=int, default=0,
                          help="seed of initialisation, shuffling and noise")
    training.add_argument("--freeze-encoder", type=Path, default=None, metavar="MODEL",
                          help="train a new decoder and critic on the frozen encoder (and "
                          "latent size) of this exported model: a universal representation")
    devices = parser.add_argument_group("devices and speed")
    devices.add_argument("--strategy", choices=STRATEGIES, default="default",
                         help="tf.distribute strategy: one device, mirrored over this "
                         "machine's GPUs, or multiworker over the machines in TF_CONFIG; "
                         "--batch-size is the global batch, split across replicas")
    devices.add_argument("--mixed-precision", action="store_true",
                         help="compute hidden layers in float16 on GPU (with loss scaling) "
                         "or bfloat16 on CPU; latent, pixels, entropy model, losses and "
                         "gradient penalty stay float32, and the export is float32")
    devices.add_argument("--jit", action="store_true",
                         help="compile the training step with XLA (for GPUs: on CPU, "
                         "TensorFlow's oneDNN convolutions are faster than XLA's)")
    paths = parser.add_argument_group("paths")
    paths.add_argument("--mnist-dir", type=Path, default=None,
                       help="folder with the four MNIST IDX .gz files (prepared offline "
                       "into --data-dir on first use)")
    paths.add_argument("--data-dir", type=Path, default=Path(".tfds"),
                       help="tensorflow-datasets data_dir")
    paths.add_argument("--train-dir", type=Path, default=None,
                       help="checkpoints for resumption and TensorBoard logs "
                       "(default: runs/NAME)")
    paths.add_argument("--export-dir", type=Path, default=None,
                       help="SavedModel folder (default: saved_models/NAME)")
    paths.add_argument("--overwrite", action="store_true",
                       help="replace an existing --export-dir")
    return parser


def model_name(args):
    """A folder name that says what the model is, e.g. mnist_d3_L3_lambda0.01."""
    name = f"mnist_d{args.latent_dim}_L{args.levels}_lambda{args.lam:g}"
    if getattr(args, "freeze_encoder", None):
        name += "_frozen"
    if args.rate_weight:
        name += f"_beta{args.rate_weight:g}"
    if args.noise_dim != 16:
        name += f"_noise{args.noise_dim}"
    return name


def adam(learning_rate, schedule, total_steps):
    """Adam with WGAN-GP's betas (0.5, 0.9), optionally with cosine decay to 5%."""
    import tensorflow as tf
    if schedule == "cosine":
        learning_rate = tf.keras.optimizers.schedules.CosineDecay(
            learning_rate, decay_steps=total_steps, alpha=0.05)
    return tf.keras.optimizers.Adam(learning_rate, beta_1=0.5, beta_2=0.9)


def build_model(args, strategy, policy, total_steps):
    """The RDPModel, built and compiled under `strategy` and the precision `policy`."""
    from tfrdp import distribute
    from tfrdp.rdp_model import CodecConfig, RDPModel

    config = CodecConfig(latent_dim=args.latent_dim, levels=args.levels,
                         noise_dim=args.noise_dim, lam=args.lam, rate_weight=args.rate_weight,
                         critic_steps=args.critic_steps, gp_weight=args.gp_weight,
                         search_weight=args.search_weight)
    with strategy.scope(), distribute.precision(policy):
        model = RDPModel(config, seed=args.seed,
                         synchronized_bn=strategy.num_replicas_in_sync > 1)
        if args.freeze_encoder:
            load_frozen_encoder(model, args.freeze_encoder)
        model.compile(
            generator_optimizer=distribute.with_loss_scaling(
                adam(args.learning_rate, args.lr_schedule, total_steps), policy),
            critic_optimizer=distribute.with_loss_scaling(
                adam(args.critic_learning_rate, args.lr_schedule,
                     total_steps * args.critic_steps), policy),
            jit_compile=args.jit)
    return model


def frozen_encoder_source(path, args):
    """Checks --freeze-encoder and returns the exported model's metadata."""
    from tfrdp.export import read_metadata
    try:
        metadata = read_metadata(path)
    except (OSError, ValueError):
        raise TfrdpError(f"--freeze-encoder {path} is not a tfrdp SavedModel") from None
    if (metadata["latent_dim"], metadata["levels"]) != (args.latent_dim, args.levels):
        raise TfrdpError(
            f"--freeze-encoder {path} has d={metadata['latent_dim']}, L={metadata['levels']}; "
            f"pass --latent-dim {metadata['latent_dim']} --levels {metadata['levels']}")
    return metadata


def load_frozen_encoder(model, path):
    """Copies the encoder of the SavedModel at `path` into `model` and freezes it.

    A frozen Keras encoder also runs its batch norm in inference mode, so the
    symbols of a digit are exactly those the exported encoder gives.
    """
    import tensorflow as tf
    import tensorflow_compression  # noqa: F401  (the export's range-coding ops)
    source = tf.saved_model.load(str(path)).encoder.variables
    target = model.encoder.weights
    if [tuple(v.shape) for v in source] != [tuple(w.shape) for w in target]:
        raise TfrdpError(f"--freeze-encoder {path}: its encoder does not fit this model's")
    for weight, value in zip(target, source):
        weight.assign(value)
    model.encoder.trainable = False


def single_device_copy(model):
    """A float32 copy of `model` on the default device, for evaluation and export.

    The export then never depends on how the model was trained: on how many
    replicas, or in which precision.
    """
    from tfrdp import distribute
    from tfrdp.rdp_model import RDPModel

    with distribute.precision("float32"):
        copy = RDPModel(model.config, seed=model.seed)
    copy.encoder.trainable = model.encoder.trainable
    for part in ("encoder", "decoder", "critic", "prior"):
        getattr(copy, part).set_weights(getattr(model, part).get_weights())
    copy.compile(generator_optimizer=None, critic_optimizer=None)
    return copy


def run(args, extra_callbacks=(), verbose=None):
    """Trains, evaluates and exports; returns (metadata, export folder).

    Under a multi-worker strategy only the chief evaluates and exports; the
    other workers return (None, None).
    """
    import tensorflow as tf

    from tfrdp import data, distribute

    name = model_name(args)
    export_dir = args.export_dir or DEFAULT_MODEL_ROOT / name
    train_dir = args.train_dir or DEFAULT_TRAIN_ROOT / name
    if export_dir.exists() and not args.overwrite:
        raise FileExistsError(f"{export_dir} exists (pass --overwrite to replace it)")
    if args.search_weight > 0 and args.levels ** args.latent_dim > MAX_SEARCH_CELLS:
        raise TfrdpError(f"--search-weight needs at most {MAX_SEARCH_CELLS} cells, and "
                         f"{args.levels}^{args.latent_dim} is more: pass --search-weight 0")
    if args.freeze_encoder:
        frozen_encoder_source(args.freeze_encoder, args)
        args.search_weight = 0.0  # the search aid only trains the encoder
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2

    strategy = distribute.make_strategy(args.strategy)  # before any other TF work
    chief = distribute.is_chief(strategy)
    if args.batch_size % strategy.num_replicas_in_sync:
        raise TfrdpError(f"--batch-size {args.batch_size} does not split evenly over "
                         f"{strategy.num_replicas_in_sync} replicas")
    policy = distribute.mixed_precision_policy() if args.mixed_precision else "float32"
    tf.keras.utils.set_random_seed(args.seed)
    train_data = data.mnist_dataset("train", args.batch_size, args.mnist_dir, args.data_dir,
                                    training=True, seed=args.seed)
    eval_digits = min(args.eval_digits, SPLIT_SIZES["test"])
    test_data = data.mnist_dataset("test", min(args.batch_size * 4, 1000), args.mnist_dir,
                                   args.data_dir, limit=eval_digits)
    steps = args.steps_per_epoch or SPLIT_SIZES["train"] // args.batch_size
    model = build_model(args, strategy, policy, args.epochs * steps)

    backup_dir = train_dir / "backup"
    if chief and backup_dir.is_dir() and any(backup_dir.iterdir()):
        print(f"Resuming from the backup in {backup_dir}", flush=True)
    callbacks = [tf.keras.callbacks.BackupAndRestore(str(backup_dir))]
    if chief:
        callbacks.append(tf.keras.callbacks.TensorBoard(str(train_dir / "logs"), profile_batch=0))
    callbacks.extend(extra_callbacks)
    started = time.time()
    model.fit(train_data, epochs=args.epochs, steps_per_epoch=steps,
              validation_data=test_data, callbacks=callbacks, verbose=verbose if chief else 0)
    train_seconds = time.time() - started
    # Reading batch-norm statistics is a collective op across workers: every
    # worker takes the copy, then only the chief goes on.
    trained = single_device_copy(model)
    if not chief:
        distribute.barrier(strategy)  # until the chief has exported
        return None, None
    try:
        return _evaluate_and_export(args, trained, test_data, export_dir, metadata_extra={
            "replicas": strategy.num_replicas_in_sync, "precision": policy,
            "train_seconds_this_run": round(train_seconds, 1), "eval_digits": eval_digits})
    finally:
        if backup_dir.is_dir() and not any(backup_dir.iterdir()):
            backup_dir.rmdir()  # Keras empties it once training has finished
        distribute.barrier(strategy)


def _evaluate_and_export(args, trained, test_data, export_dir, metadata_extra):
    from tfrdp import export

    metrics = trained.evaluate(test_data, return_dict=True, verbose=0)
    metrics = {key: float(value) for key, value in metrics.items()}
    metadata = export.model_metadata(trained, export_dir.name, metrics)
    metadata["training"] = {
        **{key: (str(value) if isinstance(value, Path) else value)
           for key, value in vars(args).items()},
        **metadata_extra}
    export.export_model(trained, export_dir, metadata, overwrite=args.overwrite)
    (export_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metadata, export_dir


def report(metadata, export_dir):
    metrics = metadata["test_metrics"]
    print(f"Test metrics on {metadata['training']['eval_digits']} digits: "
          f"mse {metrics['mse']:.5f}  psnr {metrics['psnr']:.2f} dB  "
          f"w1 {metrics['w1']:.4f}  bits/digit {metrics['bits']:.3f} "
          f"(nominal {metadata['nominal_bits_per_digit']:.3f})")
    print(f"SavedModel: {export_dir}  (fingerprint {metadata['fingerprint']})")


def main(argv=None, prog=None):
    args = build_parser(prog).parse_args(argv)
    try:
        metadata, export_dir = run(args)
    except (TfrdpError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume from the last epoch",
              file=sys.stderr)
        return 130
    if metadata is not None:  # the chief reports; other workers have nothing to say
        report(metadata, export_dir)
    return 0
