"""`tfrdp compress / decompress / info`: inputs, outputs, the file format and its checks."""

import gzip
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO
from tfrdp import cli, codec, data, fileformat, imageio
from tfrdp.export import export_model
from tfrdp.rdp_model import RDPModel


@pytest.fixture(scope="module")
def digits(data_dir):
    return data.load_images("test", data_dir=data_dir, limit=200)


@pytest.fixture(scope="module")
def small_file(trained, digits, tmp_path_factory):
    """A compressed file of 3 digits, made with the trained model."""
    path = tmp_path_factory.mktemp("small") / "three.rdp"
    np.save(path.with_suffix(".npy"), digits[:3])
    assert cli.main(["compress", str(path.with_suffix(".npy")), "-o", str(path),
                     "--model", str(trained[1]), "--seed", "77"]) == 0
    return path


def tfrdp(*args):
    return cli.main([str(a) for a in args])


def write_png(path, array):
    path.write_bytes(tf.io.encode_png(array).numpy())


def test_round_trip_equals_reconstruct_in_another_process(trained, digits, tmp_path):
    export_dir = trained[1]
    np.save(tmp_path / "digits.npy", digits)
    assert tfrdp("compress", tmp_path / "digits.npy", "-o", tmp_path / "d.rdp", "--model",
                 export_dir, "--seed", "4242") == 0
    result = subprocess.run(
        [sys.executable, "-m", "tfrdp", "decompress", tmp_path / "d.rdp", "-o",
         tmp_path / "out.npy", "--model-dir", export_dir.parent],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    decoded = np.load(tmp_path / "out.npy")
    expected = codec.Codec(export_dir).reconstruct(digits, 4242)
    assert decoded.dtype == np.uint8 and decoded.shape == (200, 28, 28, 1)
    assert np.array_equal(decoded, expected)
    # A second decompression in this process gives the same pixels.
    assert tfrdp("decompress", tmp_path / "d.rdp", "-o", tmp_path / "again.npy",
                 "--model", export_dir) == 0
    assert np.array_equal(np.load(tmp_path / "again.npy"), decoded)


def test_header_overhead_is_small(trained):
    payload = bytes(6000)  # 10,000 digits at 4.8 bits/digit
    for name in (trained[0]["name"], "mnist_d3_L3_lambda0.015_beta0.01"):
        header = fileformat.Header(name, trained[0]["fingerprint"], 10000, (28, 28, 1),
                                   2**32 - 1)
        overhead = len(fileformat.pack(header, payload)) - len(payload)
        assert overhead == 29 + len(name.encode()) <= 64
        assert fileformat.unpack(fileformat.pack(header, payload)) == (header, payload)


def test_every_truncation_is_rejected_without_output(small_file, tmp_path, capsys):
    content = small_file.read_bytes()
    for length in range(len(content)):
        (tmp_path / "cut.rdp").write_bytes(content[:length])
        assert tfrdp("decompress", tmp_path / "cut.rdp", "-o", tmp_path / "out.npy") == 1
        error = capsys.readouterr().err
        assert error.startswith("tfrdp: error: ") and error.count("\n") == 1, error
        assert ("truncated" in error or "not a tfrdp" in error), (length, error)
        assert not (tmp_path / "out.npy").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.rdp"]


def flipped(content, bit):
    changed = bytearray(content)
    changed[bit // 8] ^= 1 << (bit % 8)
    return bytes(changed)


def test_every_header_bit_flip_and_sampled_payload_flips_are_rejected(small_file, tmp_path,
                                                                      capsys):
    content = small_file.read_bytes()
    header, payload = fileformat.unpack(content)
    header_bits = range(8 * (len(content) - len(payload) - 4))
    rng = np.random.default_rng(0)
    payload_start = 8 * (len(content) - len(payload) - 4)
    payload_bits = rng.choice(np.arange(payload_start, 8 * len(content)), 48, replace=False)
    for bit in [*header_bits, *payload_bits]:
        (tmp_path / "bad.rdp").write_bytes(flipped(content, int(bit)))
        assert tfrdp("decompress", tmp_path / "bad.rdp", "-o", tmp_path / "out") == 1
        error = capsys.readouterr().err
        assert any(word in error for word in ("checksum", "truncated", "corrupted",
                                              "not a tfrdp", "unsupported")), (bit, error)
        assert not (tmp_path / "out").exists()


def test_format_errors_name_the_problem(small_file):
    content = small_file.read_bytes()
    with pytest.raises(fileformat.FormatError, match="not a tfrdp compressed file"):
        fileformat.unpack(b"PNG" + content)
    with pytest.raises(fileformat.FormatError, match="unsupported tfrdp file version 2"):
        fileformat.unpack(content[:4] + b"\x02" + content[5:])
    with pytest.raises(fileformat.FormatError, match="bytes after its end"):
        fileformat.unpack(content + b"\x00")


def test_wrong_and_missing_models_are_refused(small_file, tmp_path, capsys):
    other = tmp_path / "other"
    export_model(RDPModel(), other, {"name": "other", "fingerprint": "0" * 16})
    assert tfrdp("decompress", small_file, "-o", tmp_path / "o.npy", "--model", other) == 1
    assert "is not the model this file was made with" in capsys.readouterr().err
    assert tfrdp("decompress", small_file, "-o", tmp_path / "o.npy", "--model-dir",
                 tmp_path / "none") == 1
    assert "named in the file is not in" in capsys.readouterr().err
    assert tfrdp("decompress", small_file, "-o", tmp_path / "o.npy", "--model",
                 tmp_path / "absent") == 1
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "o.npy").exists()


def test_each_input_format_gives_the_same_file(trained, digits, tmp_path):
    three = digits[:3]
    np.save(tmp_path / "a.npy", three)
    np.save(tmp_path / "b.npy", three[..., 0])
    (tmp_path / "pngs").mkdir()
    for index, digit in enumerate(three):
        write_png(tmp_path / "pngs" / f"{index}.png", digit)
    idx = b"\x00\x00\x08\x03" + b"".join(n.to_bytes(4, "big") for n in (3, 28, 28))
    (tmp_path / "x-idx3-ubyte").write_bytes(idx + three.tobytes())
    (tmp_path / "y-idx3-ubyte.gz").write_bytes(gzip.compress(idx + three.tobytes()))
    outputs = []
    for source in ["a.npy", "b.npy", "pngs", "x-idx3-ubyte", "y-idx3-ubyte.gz"]:
        output = tmp_path / f"{source}.rdp"
        assert tfrdp("compress", tmp_path / source, "-o", output, "--model", trained[1],
                     "--seed", "5") == 0
        outputs.append(output.read_bytes())
    assert all(content == outputs[0] for content in outputs)
    write_png(tmp_path / "one.png", three[0])
    assert tfrdp("compress", tmp_path / "one.png", "--model", trained[1]) == 0
    assert fileformat.unpack((tmp_path / "one.rdp").read_bytes())[0].count == 1


def test_mnist_idx_file_reads_all_test_digits(mnist_dir, data_dir):
    images = imageio.read_digits(mnist_dir / "t10k-images-idx3-ubyte.gz")
    assert images.shape == (10000, 28, 28, 1)
    # tfds stores the split in another order: compare the digits as multisets.
    as_sorted = lambda array: sorted(digit.tobytes() for digit in array)  # noqa: E731
    assert as_sorted(images) == as_sorted(data.load_images("test", data_dir=data_dir))


@pytest.mark.parametrize("make, message", [
    (lambda p: np.save(p / "in.npy", np.zeros((2, 28, 28), np.float32)), "expected dtype uint8"),
    (lambda p: np.save(p / "in.npy", np.zeros((2, 28, 27), np.uint8)), "expected shape"),
    (lambda p: np.save(p / "in.npy", np.zeros((0, 28, 28), np.uint8)), "holds no digits"),
    (lambda p: write_png(p / "in.png", np.zeros((28, 28, 3), np.uint8)), "grayscale"),
    (lambda p: write_png(p / "in.png", np.zeros((28, 27, 1), np.uint8)), "28x28 pixels"),
    (lambda p: (p / "in.png").write_bytes(b"not a png"), "not a PNG"),
    (lambda p: (p / "in").mkdir(), "no .png files"),
    (lambda p: (p / "in.txt").write_text("7"), "unsupported input"),
    (lambda p: (p / "in-idx3-ubyte").write_bytes(b"\x00\x00\x08\x01" + bytes(12)), "IDX3"),
    (lambda p: None, "no such file"),
])
def test_bad_inputs_are_clear_errors(make, message, tmp_path, trained, capsys):
    make(tmp_path)
    source = next(iter(sorted(tmp_path.glob("in*"))), tmp_path / "in.npy")
    assert tfrdp("compress", source, "-o", tmp_path / "out.rdp", "--model", trained[1]) == 1
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1 and "Traceback" not in error
    assert not (tmp_path / "out.rdp").exists()


def test_outputs_by_name_and_grid(small_file, trained, tmp_path):
    model = ["--model", trained[1]]
    assert tfrdp("decompress", small_file, "-o", tmp_path / "digits", *model,
                 "--grid", tmp_path / "sheet.png") == 0
    pngs = sorted((tmp_path / "digits").iterdir())
    assert [p.name for p in pngs] == ["digit_00000.png", "digit_00001.png", "digit_00002.png"]
    as_npy = tmp_path / "d.npy"
    assert tfrdp("decompress", small_file, "-o", as_npy, *model) == 0
    assert np.array_equal(imageio.read_digits(tmp_path / "digits"), np.load(as_npy))
    sheet = tf.io.decode_png((tmp_path / "sheet.png").read_bytes()).numpy()
    assert sheet.shape == (2 * 29 + 1, 2 * 29 + 1, 1)
    assert np.array_equal(sheet[1:29, 30:58], np.load(as_npy)[1])
    # One PNG holds one digit.
    assert tfrdp("decompress", small_file, "-o", tmp_path / "x.png", *model) == 1
    assert not (tmp_path / "x.png").exists()


def test_overwrite_is_explicit_and_never_hits_the_input(small_file, trained, tmp_path, capsys):
    output = tmp_path / "out.npy"
    output.write_bytes(b"precious")
    assert tfrdp("decompress", small_file, "-o", output, "--model", trained[1]) == 1
    assert "--overwrite" in capsys.readouterr().err and output.read_bytes() == b"precious"
    assert tfrdp("decompress", small_file, "-o", output, "--model", trained[1],
                 "--overwrite") == 0
    assert np.load(output).shape == (3, 28, 28, 1)
    before = small_file.read_bytes()
    assert tfrdp("compress", output, "-o", output, "--model", trained[1], "--overwrite") == 1
    assert "is the input" in capsys.readouterr().err
    assert tfrdp("decompress", small_file, "-o", small_file, "--overwrite") == 1
    assert small_file.read_bytes() == before


def test_info_prints_header_and_rates(small_file, trained, capsys):
    assert tfrdp("info", small_file) == 0
    out = capsys.readouterr().out
    header, payload = fileformat.unpack(small_file.read_bytes())
    assert f"model:          {trained[0]['name']}" in out
    assert f"fingerprint:    {trained[0]['fingerprint']}" in out
    assert "digits:         3" in out and "seed:           77" in out
    size = small_file.stat().st_size
    assert f"{size} bytes" in out and f"{8 * size / 3:.4f} (file)" in out
    assert f"{8 * len(payload) / 3:.4f} (payload)" in out


def test_usage_errors_exit_2(tmp_path):
    for argv in (["compress"], ["compress", "x.npy", "--model", "m", "--seed", "-1"],
                 ["bogus"], []):
        result = subprocess.run([sys.executable, "-m", "tfrdp", *argv], capture_output=True,
                                text=True, cwd=tmp_path, timeout=120)
        assert result.returncode == 2, (argv, result.stderr)
        assert "Traceback" not in result.stderr


def test_os_errors_are_one_line_errors(small_file, trained, tmp_path, capsys, monkeypatch):
    def refuse(digits, path):
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(imageio, "write_digits", refuse)
    assert tfrdp("decompress", small_file, "-o", tmp_path / "x.npy", "--model", trained[1]) == 1
    error = capsys.readouterr().err
    assert error == f"tfrdp: error: {tmp_path / 'x.npy'}: Permission denied\n"
