"""`tfrdp sweep`: train and evaluate a grid of (rate, lambda) points and plot the tradeoff.

    tfrdp sweep --rates 1x4,3x3,4x4 --lambdas 0,0.0025,0.005,0.01,0.015 \
        --out results/mnist --mnist-dir ../shared/data/mnist --epochs 2

A rate DxL is d latent dimensions of L levels (d*log2(L) bits/digit). Every
point is trained in its own `python -m tfrdp train` process (several at once
with --jobs), exported under OUT/models, evaluated with `tfrdp.evaluation`, and
its metrics saved as OUT/points/NAME.json. Rerunning the command skips what is
done: an exported model is not retrained, an evaluated point not re-evaluated,
and an interrupted training resumes from its backup in OUT/runs. A crash loses
at most the points in progress. --universal adds, for every rate, decoders
trained on the frozen encoder of its lambda=0 model (Zhang et al., 2021).

Writes OUT/results.csv and OUT/results.json (one row per point), OUT/floors.json
and three figures: distortion_perception.png, rate_distortion.png and
reconstructions_DxL.png for each rate.
"""

import concurrent.futures
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from tfrdp.errors import TfrdpError
from tfrdp.fsutil import write_bytes_atomic

PERCEPTION = ("w1_critic", "sliced_w1", "fid")
COLUMNS = ("name", "rate", "latent_dim", "levels", "lambda", "encoder", "nominal_bits",
           "file_bits", "payload_bits", "estimated_bits", "mse", "psnr", "w1_critic",
           "sliced_w1", "fid", "class_accuracy", "epochs", "train_seconds")


@dataclasses.dataclass(frozen=True)
class Point:
    latent_dim: int
    levels: int
    lam: float
    frozen: bool = False  # decoder trained on the frozen encoder of the lambda=0 point

    @property
    def rate(self):
        return f"{self.latent_dim}x{self.levels}"

    @property
    def nominal_bits(self):
        return self.latent_dim * math.log2(self.levels)

    @property
    def name(self):
        name = f"mnist_d{self.latent_dim}_L{self.levels}_lambda{self.lam:g}"
        return name + "_frozen" if self.frozen else name

    @property
    def encoder(self):
        return "frozen (lambda=0)" if self.frozen else "end-to-end"


def parse_rates(text):
    rates = []
    for item in text.split(","):
        try:
            dims, levels = (int(part) for part in item.lower().split("x"))
        except ValueError:
            raise TfrdpError(f"--rates: {item!r} is not DxL (e.g. 3x3)") from None
        if dims < 1 or levels < 2:
            raise TfrdpError(f"--rates: {item!r} needs D >= 1 and L >= 2")
        rates.append((dims, levels))
    return rates


def parse_lambdas(text):
    try:
        values = [float(item) for item in text.split(",")]
    except ValueError:
        raise TfrdpError(f"--lambdas: {text!r} is not a comma-separated list of numbers") from None
    if any(not math.isfinite(value) or value < 0 for value in values):
        raise TfrdpError("--lambdas: every lambda must be a finite number >= 0")
    return sorted(set(values))


def plan(rates, lambdas, universal_rates=()):
    """End-to-end points first (the frozen ones need the lambda=0 encoders)."""
    points = [Point(d, levels, lam) for d, levels in rates for lam in lambdas]
    if universal_rates:
        if 0.0 not in lambdas:
            raise TfrdpError("--universal needs lambda 0 in --lambdas (its encoders are reused)")
        missing = [f"{d}x{levels}" for d, levels in universal_rates if (d, levels) not in rates]
        if missing:
            raise TfrdpError(f"--universal rates {', '.join(missing)} are not in --rates")
        points += [Point(d, levels, lam, frozen=True)
                   for d, levels in universal_rates for lam in lambdas if lam > 0]
    return points


class Sweep:
    def __init__(self, args):
        self.args = args
        self.out = Path(args.out)
        self.models = self.out / "models"
        self.runs = self.out / "runs"
        self.points_dir = self.out / "points"

    def model_dir(self, point):
        return self.models / point.name

    def train_command(self, point):
        args = self.args
        command = [sys.executable, "-m", "tfrdp", "train", "--lambda", f"{point.lam:g}",
                   "--latent-dim", str(point.latent_dim), "--levels", str(point.levels),
                   "--epochs", str(args.epochs), "--data-dir", str(args.data_dir),
                   "--train-dir", str(self.runs / point.name),
                   "--export-dir", str(self.model_dir(point)), "--seed", str(args.seed)]
        if args.mnist_dir:
            command += ["--mnist-dir", str(args.mnist_dir)]
        if args.steps_per_epoch:
            command += ["--steps-per-epoch", str(args.steps_per_epoch)]
        if args.eval_digits:
            command += ["--eval-digits", str(args.eval_digits)]
        if args.mixed_precision:
            command.append("--mixed-precision")
        if point.frozen:
            command += ["--freeze-encoder", str(self.model_dir(Point(point.latent_dim,
                                                                      point.levels, 0.0)))]
        return command

    def train(self, point):
        """Trains one point in its own process; its output goes to runs/NAME/train.log."""
        log_path = self.runs / point.name / "train.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.time()
        with open(log_path, "a") as log:
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
            result = subprocess.run(self.train_command(point), stdout=log,
                                    stderr=subprocess.STDOUT, env=env)
        if result.returncode != 0:
            raise TfrdpError(f"training {point.name} failed (exit {result.returncode}); "
                             f"see {log_path}")
        return time.time() - started

    def train_all(self, points):
        todo = [point for point in points if not self.model_dir(point).is_dir()]
        if not todo:
            return
        print(f"training {len(todo)} of {len(points)} points "
              f"({self.args.jobs} at a time; logs in {self.runs}/NAME/train.log)", flush=True)
        done = 0
        # Frozen-encoder points wait for the end-to-end wave that trains their encoders.
        for wave in ([p for p in todo if not p.frozen], [p for p in todo if p.frozen]):
            with concurrent.futures.ThreadPoolExecutor(self.args.jobs) as pool:
                futures = {pool.submit(self.train, point): point for point in wave}
                for future in concurrent.futures.as_completed(futures):
                    seconds = future.result()
                    done += 1
                    print(f"[{done}/{len(todo)}] trained {futures[future].name} "
                          f"in {seconds:.0f} s", flush=True)

    def evaluate_all(self, points):
        from tfrdp import classifier, codec, evaluation
        todo = [p for p in points if not (self.points_dir / f"{p.name}.json").is_file()]
        floors_path = self.out / "floors.json"
        if not todo and floors_path.is_file():
            return
        settings = evaluation.Settings(critic_steps=self.args.eval_critic_steps)
        eval_data = evaluation.EvaluationData.load("test", self.args.mnist_dir,
                                                   self.args.data_dir)
        judge = classifier.load_classifier(self.args.classifier)
        if not floors_path.is_file():
            print("measuring the perception floors (real digits vs real digits)", flush=True)
            floors = evaluation.floors(eval_data, judge, settings)
            write_json(floors_path, floors)
        self.points_dir.mkdir(parents=True, exist_ok=True)
        for index, point in enumerate(todo, 1):
            started = time.time()
            model = codec.Codec(self.model_dir(point))
            metrics = evaluation.evaluate(model, eval_data, judge, settings)
            training = model.metadata.get("training", {})
            row = {"name": point.name, "rate": point.rate, "latent_dim": point.latent_dim,
                   "levels": point.levels, "lambda": point.lam, "encoder": point.encoder,
                   "epochs": training.get("epochs"),
                   "train_seconds": training.get("train_seconds_this_run"), **metrics}
            write_json(self.points_dir / f"{point.name}.json", row)
            print(f"[{index}/{len(todo)}] evaluated {point.name} in {time.time() - started:.0f} s:"
                  f" mse {row['mse']:.4f}, w1 {row['w1_critic']:.3f}, "
                  f"{row['file_bits']:.2f} bits/digit", flush=True)

    def collect(self, points):
        rows = [json.loads((self.points_dir / f"{p.name}.json").read_text()) for p in points]
        floors = json.loads((self.out / "floors.json").read_text())
        write_json(self.out / "results.json", {"floors": floors, "points": rows})
        lines = [",".join(COLUMNS)]
        for row in rows:
            lines.append(",".join(_csv_value(row.get(column)) for column in COLUMNS))
        write_bytes_atomic(self.out / "results.csv", ("\n".join(lines) + "\n").encode())
        return rows, floors


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return f'"{text}"' if "," in text else text


def write_json(path, value):
    write_bytes_atomic(path, (json.dumps(value, indent=2) + "\n").encode())


def run(args):
    rates = parse_rates(args.rates)
    universal = [] if args.universal is None else (
        rates if args.universal == "all" else parse_rates(args.universal))
    points = plan(rates, parse_lambdas(args.lambdas), universal)
    sweep = Sweep(args)
    sweep.out.mkdir(parents=True, exist_ok=True)
    sweep.train_all(points)
    sweep.evaluate_all(points)
    rows, floors = sweep.collect(points)
    from tfrdp import plots
    figures = plots.draw_all(rows, floors, sweep.out, sweep.models, args.mnist_dir,
                             args.data_dir)
    print(f"wrote {sweep.out / 'results.csv'}, {sweep.out / 'results.json'} and "
          f"{', '.join(path.name for path in figures)}")


def add_arguments(parser):
    parser.add_argument("--rates", required=True,
                        help="comma-separated DxL latent sizes, e.g. 1x4,3x3,4x4")
    parser.add_argument("--lambdas", required=True,
                        help="comma-separated perception weights, e.g. 0,0.005,0.01")
    parser.add_argument("--out", type=Path, required=True, help="results folder")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs per point")
    parser.add_argument("--steps-per-epoch", type=int, default=None)
    parser.add_argument("--eval-digits", type=int, default=None,
                        help="test digits for each training's own validation (default: all); "
                        "the sweep's evaluation always uses the whole test split")
    parser.add_argument("--mixed-precision", action="store_true",
                        help="train in bfloat16/float16 (see train.py --help)")
    parser.add_argument("--universal", nargs="?", const="all", default=None, metavar="RATES",
                        help="also train decoders on the frozen lambda=0 encoder of these "
                        "rates (all rates when given alone)")
    parser.add_argument("--jobs", type=int, default=1, help="points trained at once")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-critic-steps", type=int, default=1000,
                        help="training steps of the fresh critic that measures W1")
    parser.add_argument("--classifier", type=Path, default=Path("saved_models/mnist_classifier"))
    parser.add_argument("--mnist-dir", type=Path, default=None)
    parser.add_argument("--data-dir", type=Path, default=Path(".tfds"))
