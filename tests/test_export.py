"""The exported SavedModel: signatures, determinism, bit-exact round trip and true rates."""

import json
import math

import numpy as np
import tensorflow as tf
import tensorflow_compression  # noqa: F401  (registers the range-coding ops)

from conftest import REPO, run_python
from tfrdp import data, export
from tfrdp.entropy import TABLE_LEARNED, TABLE_UNIFORM, SymbolCoder

# Runs in a fresh interpreter that imports only tensorflow and tensorflow_compression.
ROUND_TRIP = r"""
import sys, json
import numpy as np
import tensorflow as tf
import tensorflow_compression
model = tf.saved_model.load(sys.argv[1])
images = tf.constant(np.load(sys.argv[2]))
seed = tf.constant(1234, tf.int64)
symbols = model.signatures["encode"](images=images)["symbols"]
decoded = model.signatures["decode"](symbols=symbols, seed=seed)["images"]
packed = model.signatures["compress"](images=images)
unpacked = model.signatures["decompress"](bitstring=packed["bitstring"], count=packed["count"],
                                          seed=seed)["images"]
reconstructed = model.signatures["reconstruct"](images=images, seed=seed)["images"]
np.savez(sys.argv[3], symbols=symbols.numpy(), decoded=decoded.numpy(),
         unpacked=unpacked.numpy(), reconstructed=reconstructed.numpy(),
         bitstring=np.frombuffer(packed["bitstring"].numpy(), np.uint8))
print(json.dumps({"tfrdp_imported": any(m.startswith("tfrdp") for m in sys.modules)}))
"""


def load(export_dir):
    return tf.saved_model.load(str(export_dir))


def test_metadata_asset_describes_the_model(trained):
    metadata, export_dir = trained
    assert export.read_metadata(export_dir) == json.loads(json.dumps(metadata))
    assert metadata["latent_dim"] == 3 and metadata["levels"] == 3
    assert metadata["lambda"] == 0.01
    assert math.isclose(metadata["nominal_bits_per_digit"], 3 * math.log2(3))
    assert metadata["estimated_bits_per_digit"] == metadata["test_metrics"]["bits"]
    assert len(metadata["fingerprint"]) == 16
    assert np.allclose(np.sum(metadata["prior_pmf"], axis=1), 1.0)


def test_signatures_have_the_documented_interface(trained):
    model = load(trained[1])
    assert set(model.signatures) == {"encode", "decode", "compress", "decompress", "reconstruct"}
    inputs = {name: {key: (spec.dtype, spec.shape.as_list())
                     for key, spec in fn.structured_input_signature[1].items()}
              for name, fn in model.signatures.items()}
    assert inputs["encode"] == {"images": (tf.uint8, [None, 28, 28, 1])}
    assert inputs["decode"] == {"symbols": (tf.int32, [None, 3]), "seed": (tf.int64, [])}
    assert inputs["decompress"] == {"bitstring": (tf.string, []), "count": (tf.int32, []),
                                    "seed": (tf.int64, [])}
    outputs = {name: set(fn.structured_outputs) for name, fn in model.signatures.items()}
    assert outputs["compress"] == {"bitstring", "count"}
    assert outputs["decode"] == outputs["reconstruct"] == {"images"}


def test_round_trip_is_bit_exact_in_a_process_without_tfrdp(trained, data_dir, tmp_path):
    images = data.load_images("test", data_dir=data_dir, limit=300)
    np.save(tmp_path / "images.npy", images)
    result = run_python(ROUND_TRIP, trained[1], tmp_path / "images.npy", tmp_path / "out.npz")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"tfrdp_imported": False}
    out = np.load(tmp_path / "out.npz")
    assert out["decoded"].dtype == np.uint8 and out["decoded"].shape == (300, 28, 28, 1)
    assert np.array_equal(out["unpacked"], out["decoded"])
    assert np.array_equal(out["reconstructed"], out["decoded"])
    assert set(np.unique(out["symbols"])) <= {0, 1, 2}

    # This process (tfrdp imported) computes the same symbols, bytes and pixels.
    model = load(trained[1])
    packed = model.compress(images)
    assert packed["bitstring"].numpy() == out["bitstring"].tobytes()
    assert np.array_equal(model.reconstruct(images, tf.constant(1234, tf.int64))["images"],
                          out["reconstructed"])


def test_seed_decides_the_decoder_noise(trained, data_dir):
    model = load(trained[1])
    symbols = model.encode(data.load_images("test", data_dir=data_dir, limit=64))["symbols"]
    first = model.decode(symbols, tf.constant(1, tf.int64))["images"].numpy()
    again = model.decode(symbols, tf.constant(1, tf.int64))["images"].numpy()
    other = model.decode(symbols, tf.constant(2, tf.int64))["images"].numpy()
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)  # noise_dim=16: the decoder is stochastic


def test_decode_rejects_symbols_outside_the_levels(trained):
    model = load(trained[1])
    for bad in ([[0, 1, 3]], [[-1, 0, 0]]):
        try:
            model.decode(tf.constant(bad, tf.int32), tf.constant(0, tf.int64))
        except tf.errors.InvalidArgumentError as error:
            assert "symbols must be" in str(error)
        else:
            raise AssertionError(f"decode accepted {bad}")


def estimated_bits(pmf, symbols):
    pmf = np.asarray(pmf)
    return float(-np.log2(pmf[np.arange(pmf.shape[0]), symbols]).sum())


def test_compressed_size_matches_the_estimate_and_never_exceeds_nominal(trained, data_dir):
    metadata, export_dir = trained
    model = load(export_dir)
    images = data.load_images("test", data_dir=data_dir)
    symbols = model.encode(images)["symbols"].numpy()
    packed = model.compress(images)
    assert int(packed["count"]) == 10000
    size_bits = 8 * len(packed["bitstring"].numpy())
    estimate = estimated_bits(metadata["prior_pmf"], symbols)
    nominal = 10000 * metadata["nominal_bits_per_digit"]
    slack = 8 * 8  # a few bytes: table byte and range-coder flush
    assert size_bits <= 1.005 * min(estimate, nominal) + slack
    if estimate < nominal:
        assert size_bits >= estimate - slack  # a true code cannot beat the model's entropy


def test_symbol_coder_falls_back_to_the_uniform_table_when_shorter():
    pmf = np.array([[0.90, 0.05, 0.05], [0.98, 0.01, 0.01]], np.float32)
    coder = SymbolCoder(pmf)
    nominal = 2 * math.log2(3)
    rng = np.random.default_rng(0)
    likely = np.stack([rng.choice(3, 5000, p=row) for row in pmf], 1)
    rarest = np.ones((5000, 2), np.int64)
    for symbols, table in ((likely, TABLE_LEARNED), (rarest, TABLE_UNIFORM)):
        string = coder.compress(symbols).numpy()
        assert string[:1] == table
        bits = min(estimated_bits(pmf, symbols), 5000 * nominal)
        assert 8 * len(string) <= 1.005 * bits + 64
        assert np.array_equal(coder.decompress(string, 5000).numpy(), symbols)


def test_export_refuses_to_overwrite_and_replaces_atomically(trained, tmp_path):
    import pytest
    from tfrdp.rdp_model import RDPModel
    target = tmp_path / "model"
    target.mkdir()
    (target / "keep").write_text("x")
    with pytest.raises(FileExistsError, match="--overwrite"):
        export.export_model(RDPModel(), target, {"name": "x"})
    assert (target / "keep").exists()
    export.export_model(RDPModel(), target, {"name": "x"}, overwrite=True)
    assert not (target / "keep").exists() and (target / "saved_model.pb").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging left behind


def test_shipped_models_are_small_and_round_trip(data_dir):
    """Every codec in saved_models/ is at most 5 MB and compresses right after install."""
    from tfrdp import codec, fileformat
    shipped = [path for path in (REPO / "saved_models").iterdir()
               if (path / "assets" / "tfrdp.json").is_file()]
    assert len(shipped) >= 4
    digits = data.load_images("test", data_dir=data_dir, limit=100)
    for path in shipped:
        size = sum(file.stat().st_size for file in path.rglob("*") if file.is_file())
        assert size <= 5 * 2**20, (path.name, size)
        model = codec.Codec(path)
        header, payload = fileformat.unpack(model.compress(digits, seed=3))
        assert np.array_equal(model.decompress(header, payload), model.reconstruct(digits, 3))
