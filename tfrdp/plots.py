"""The sweep's figures, drawn with matplotlib (no display needed).

    distortion_perception.png   MSE against each perception measure, a curve per rate
    rate_distortion.png         MSE against file bits/digit, a curve per lambda
    reconstructions_DxL.png     for one rate: originals, then a row per lambda
"""

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402

LABELS = {"w1_critic": "W1 (fresh WGAN-GP critic)", "sliced_w1": "sliced W1 (pixels)",
          "fid": "Fréchet distance (classifier features)"}
GRID_DIGITS = 12
GRID_SEED = 7


def save(figure, path):
    """Writes the PNG atomically: a crash never leaves half a figure."""
    from tfrdp.fsutil import staged_path
    with staged_path(path) as staging:
        figure.savefig(staging, dpi=110, format="png")
    plt.close(figure)


def _by_rate(rows):
    rates = {}
    for row in rows:
        rates.setdefault(row["rate"], []).append(row)
    return dict(sorted(rates.items(), key=lambda item: item[1][0]["nominal_bits"]))


def distortion_perception(rows, floors, path):
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for axis, measure in zip(axes, LABELS):
        for color, (rate, group) in zip(colors, _by_rate(rows).items()):
            for encoder, style in (("end-to-end", "-o"), ("frozen (lambda=0)", "--s")):
                curve = sorted((r for r in group if r["encoder"] == encoder),
                               key=lambda r: r["lambda"])
                if encoder != "end-to-end" and curve:
                    # The frozen-encoder curve starts at the shared lambda=0 model.
                    curve = [r for r in group if r["encoder"] == "end-to-end"
                             and r["lambda"] == 0] + curve
                if not curve:
                    continue
                label = f"{rate} ({group[0]['nominal_bits']:.2f} bits)"
                label += "" if encoder == "end-to-end" else ", frozen encoder"
                axis.plot([r[measure] for r in curve], [r["mse"] for r in curve], style,
                          color=color, label=label, markersize=4)
                for r in curve:
                    if encoder == "end-to-end":
                        axis.annotate(f"{r['lambda']:g}", (r[measure], r["mse"]), fontsize=7,
                                      textcoords="offset points", xytext=(3, 3))
        axis.axvline(floors[measure], color="grey", linestyle=":", label="real vs real")
        axis.set_xlabel(f"perception: {LABELS[measure]}")
        axis.set_ylabel("distortion: MSE")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.suptitle("Distortion against perception on MNIST test digits "
                    "(labels: lambda; lower-left is better)")
    figure.tight_layout()
    save(figure, path)


def rate_distortion(rows, path):
    figure, axis = plt.subplots(figsize=(6, 4.5))
    end_to_end = [r for r in rows if r["encoder"] == "end-to-end"]
    for lam in sorted({r["lambda"] for r in end_to_end}):
        curve = sorted((r for r in end_to_end if r["lambda"] == lam),
                       key=lambda r: r["file_bits"])
        axis.plot([r["file_bits"] for r in curve], [r["mse"] for r in curve], "-o",
                  label=f"lambda {lam:g}", markersize=4)
    axis.set_xlabel("rate: file bits/digit (range-coded)")
    axis.set_ylabel("distortion: MSE")
    axis.set_title("Rate against distortion at each lambda")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    save(figure, path)


def reconstruction_grid(rows, rate, model_root, originals, path):
    """Rows: the originals, then each lambda's reconstructions (noise seed GRID_SEED)."""
    from tfrdp.codec import Codec
    group = sorted((r for r in rows if r["rate"] == rate),
                   key=lambda r: (r["encoder"] != "end-to-end", r["lambda"]))
    labels, images = ["original"], [originals]
    for row in group:
        model = Codec(Path(model_root) / row["name"])
        images.append(model.reconstruct(originals, GRID_SEED))
        frozen = "" if row["encoder"] == "end-to-end" else " (frozen enc.)"
        labels.append(f"lambda {row['lambda']:g}{frozen}")
    sheet = np.concatenate([np.concatenate(list(line[..., 0]), axis=1) for line in images])
    figure, axis = plt.subplots(figsize=(GRID_DIGITS * 0.6 + 1.6, len(images) * 0.6 + 0.6))
    axis.imshow(sheet, cmap="gray", vmin=0, vmax=255)
    axis.set_yticks([28 * i + 14 for i in range(len(images))], labels, fontsize=8)
    axis.set_xticks([])
    axis.set_title(f"Rate {rate} ({group[0]['nominal_bits']:.2f} bits/digit): "
                   "the same test digits at each lambda", fontsize=9)
    figure.tight_layout()
    save(figure, path)


def draw_all(rows, floors, out_dir, model_root, mnist_dir=None, data_dir=None):
    from tfrdp.data import load_images
    out_dir = Path(out_dir)
    paths = [out_dir / "distortion_perception.png", out_dir / "rate_distortion.png"]
    distortion_perception(rows, floors, paths[0])
    rate_distortion(rows, paths[1])
    originals = load_images("test", mnist_dir, data_dir, limit=GRID_DIGITS)
    for rate in _by_rate(rows):
        paths.append(out_dir / f"reconstructions_{rate}.png")
        reconstruction_grid(rows, rate, model_root, originals, paths[-1])
    return paths
