"""`tfrdp serve` as a real subprocess on a free loopback port, spoken to over HTTP."""

import base64
import io
import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, run_python
from tfrdp import codec, data, fileformat

MAX_BYTES = 200_000


def start_server(model_dir, log):
    """Starts `tfrdp serve` on a free port; its request log goes to the file `log`."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tfrdp", "serve", "--model-dir", str(model_dir), "--port", "0",
         "--max-request-bytes", str(MAX_BYTES)],
        stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO)
    line = process.stdout.readline()
    if not line.startswith("Serving"):
        process.kill()
        log.seek(0)
        raise AssertionError(f"server did not start: {line}{log.read()}")
    return process, line.split("http://")[1].split("/")[0]


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    with open(tmp_path_factory.mktemp("serve") / "server.log", "w+") as log:
        process, address = start_server(trained[1].parent, log)
        yield address, trained[1].name
        process.terminate()
        process.wait(timeout=30)
        log.seek(0)
        assert '"POST /v1/models/' in log.read()  # one log line per request


@pytest.fixture(scope="module")
def local(trained):
    return codec.Codec(trained[1])


@pytest.fixture(scope="module")
def digits(data_dir):
    return data.load_images("test", data_dir=data_dir, limit=64)


def request(address, path, body=None, raw=False):
    """(status, parsed JSON or raw bytes) of a GET (body None) or POST."""
    payload = None if body is None else (body if raw else json.dumps(body).encode())
    req = urllib.request.Request(f"http://{address}{path}", data=payload,
                                 method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=120) as answer:
            status, content, kind = answer.status, answer.read(), answer.headers["content-type"]
    except urllib.error.HTTPError as error:
        status, content, kind = error.code, error.read(), error.headers["content-type"]
    return status, (json.loads(content) if kind == "application/json" else content)


def predict(server, signature, **body):
    return request(server[0], f"/v1/models/{server[1]}:predict",
                   {"signature_name": signature, **body})


def b64(data_bytes):
    return {"b64": base64.b64encode(data_bytes).decode()}


def test_status_and_metadata(server):
    status, answer = request(server[0], f"/v1/models/{server[1]}")
    assert status == 200 and answer["model_version_status"][0]["state"] == "AVAILABLE"
    status, answer = request(server[0], f"/v1/models/{server[1]}/metadata")
    assert status == 200
    signatures = answer["metadata"]["signature_def"]["signature_def"]
    assert set(signatures) == {"encode", "decode", "compress", "decompress", "reconstruct"}
    images = signatures["encode"]["inputs"]["images"]
    assert images["dtype"] == "DT_UINT8"
    assert [d["size"] for d in images["tensor_shape"]["dim"]] == ["-1", "28", "28", "1"]
    assert signatures["compress"]["outputs"]["bitstring"]["dtype"] == "DT_STRING"


def test_predict_every_signature_in_both_formats(server, local, digits):
    x = digits[:5]
    symbols = local.saved_model.encode(x)["symbols"].numpy()
    seed = tf.constant(9, tf.int64)
    expected_decoded = local.saved_model.decode(symbols, seed)["images"].numpy()
    packed = local.saved_model.compress(x)

    assert predict(server, "encode", instances=x.tolist()) == (200, {"predictions":
                                                                     symbols.tolist()})
    assert predict(server, "encode", inputs=x.tolist()) == (200, {"outputs": symbols.tolist()})
    assert predict(server, "encode", inputs={"images": x.tolist()})[1]["outputs"] == \
        symbols.tolist()

    rows = [{"symbols": row, "seed": 9} for row in symbols.tolist()]
    assert predict(server, "decode", instances=rows)[1]["predictions"] == \
        expected_decoded.tolist()
    assert predict(server, "decode", inputs={"symbols": symbols.tolist(), "seed": 9})[1] == \
        {"outputs": expected_decoded.tolist()}

    bitstring = b64(packed["bitstring"].numpy())
    for body in ({"inputs": {"images": x.tolist()}},
                 {"instances": [{"images": image} for image in x.tolist()]}):
        status, answer = predict(server, "compress", **body)
        outputs = answer.get("outputs") or answer["predictions"][0]
        assert status == 200 and outputs == {"bitstring": bitstring, "count": 5}

    decompress = {"bitstring": bitstring, "count": 5, "seed": 9}
    assert predict(server, "decompress", inputs=decompress)[1] == \
        {"outputs": expected_decoded.tolist()}
    assert predict(server, "decompress", instances=[decompress])[1] == \
        {"predictions": expected_decoded.tolist()}

    assert predict(server, "reconstruct", inputs={"images": x.tolist(), "seed": 9})[1] == \
        {"outputs": expected_decoded.tolist()}
    assert predict(server, "serving_default",
                   instances=[{"images": i, "seed": 9} for i in x.tolist()])[1] == \
        {"predictions": expected_decoded.tolist()}


def test_convenience_compress_and_decompress(server, local, digits):
    address, name = server
    one = io.BytesIO()
    np.save(one, digits[:7])
    status, rdp = request(address, f"/v1/models/{name}:compress?seed=11", one.getvalue(),
                          raw=True)
    assert status == 200
    header, payload = fileformat.unpack(rdp)
    assert (header.count, header.seed, header.model_name) == (7, 11, local.name)
    assert rdp == local.compress(digits[:7], 11)

    status, npy = request(address, f"/v1/models/{name}:decompress?format=npy", rdp, raw=True)
    assert status == 200
    assert np.array_equal(np.load(io.BytesIO(npy)), local.reconstruct(digits[:7], 11))
    status, sheet = request(address, f"/v1/models/{name}:decompress", rdp, raw=True)
    assert status == 200 and tf.io.decode_png(sheet).shape == (3 * 29 + 1, 3 * 29 + 1, 1)

    png = tf.io.encode_png(digits[0]).numpy()
    status, rdp = request(address, f"/v1/models/{name}:compress?seed=3", png, raw=True)
    status, image = request(address, f"/v1/models/{name}:decompress", rdp, raw=True)
    assert status == 200
    assert np.array_equal(tf.io.decode_png(image).numpy(), local.reconstruct(digits[:1], 3)[0])


@pytest.mark.parametrize("path, body, status, message", [
    (":predict", b"{not json", 400, "malformed JSON"),
    (":predict", {"signature_name": "encode"}, 400, "exactly one of"),
    (":predict", {"signature_name": "encode", "inputs": [[1, 2]]}, 400, "expected shape"),
    (":predict", {"signature_name": "encode", "inputs": np.full((1, 28, 28, 1), 300).tolist()},
     400, "outside uint8 range"),
    (":predict", {"signature_name": "encode", "inputs": np.full((1, 28, 28, 1), 0.5).tolist()},
     400, "expected integers"),
    (":predict", {"signature_name": "encode", "inputs": [[["a"] * 28] * 28]}, 400,
     "expected numbers"),
    (":predict", {"signature_name": "decode", "inputs": {"symbols": [[0, 1, 7]], "seed": 1}},
     400, "symbols must be < levels"),
    (":predict", {"signature_name": "decode", "inputs": {"symbols": [[0, 1, 1]]}}, 400,
     "exactly the inputs"),
    (":predict", {"signature_name": "decompress", "inputs": {
        "bitstring": {"b64": "!!"}, "count": 1, "seed": 1}}, 400, "invalid base64"),
    (":predict", {"signature_name": "nope", "inputs": []}, 404, "has no signature 'nope'"),
    (":frobnicate", {}, 404, "unknown method"),
    (":compress", b"hello", 400, "expected a PNG or .npy"),
    (":decompress", b"TRDP\x01garbage", 400, "truncated"),
    (":predict", b"x" * (MAX_BYTES + 1), 413, "over 200000 bytes"),
])
def test_errors(server, path, body, status, message):
    raw = isinstance(body, bytes)
    got_status, answer = request(server[0], f"/v1/models/{server[1]}{path}", body, raw=raw)
    assert got_status == status and message in answer["error"], answer


def test_unknown_model_is_404(server):
    for path, body in (("/v1/models/none", None), ("/v1/models/none/metadata", None),
                       ("/v1/models/none:predict", {"inputs": []})):
        status, answer = request(server[0], path, body)
        assert status == 404 and "no model named 'none'" in answer["error"]


def test_64_concurrent_requests_are_all_answered_correctly(server, local, digits):
    expected = [local.reconstruct(digits[i:i + 1], i) for i in range(64)]

    def reconstruct(i):
        return predict(server, "reconstruct", inputs={"images": digits[i:i + 1].tolist(),
                                                      "seed": i})

    with ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(reconstruct, range(64)))
    for i, (status, answer) in enumerate(answers):
        assert status == 200 and np.array_equal(answer["outputs"], expected[i]), i


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_startup_errors_are_one_line(tmp_path, trained):
    empty = subprocess.run([sys.executable, "-m", "tfrdp", "serve", "--model-dir",
                            str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert empty.returncode == 1
    assert empty.stderr.startswith("tfrdp: error: no SavedModels in")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = subprocess.run([sys.executable, "-m", "tfrdp", "serve", "--model-dir",
                               str(trained[1].parent), "--port", str(port)],
                              capture_output=True, text=True, timeout=120)
    assert busy.returncode == 1
    assert busy.stderr.strip() == (f"tfrdp: error: cannot listen on 127.0.0.1:{port}: "
                                   "Address already in use")


TRANSFORMS_ONLY = r"""
import sys, numpy as np, tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
assert sorted(model.signatures) == ["decode", "encode", "reconstruct"], list(model.signatures)
images = tf.constant(np.load(sys.argv[2]))
out = model.signatures["reconstruct"](images=images, seed=tf.constant(5, tf.int64))["images"]
np.save(sys.argv[3], out.numpy())
assert "tensorflow_compression" not in sys.modules
"""


def test_custom_op_free_export_matches_the_full_model(trained, local, digits, tmp_path):
    np.save(tmp_path / "x.npy", digits)
    result = run_python(TRANSFORMS_ONLY, trained[1] / "transforms" / "1", tmp_path / "x.npy",
                        tmp_path / "out.npy")
    assert result.returncode == 0, result.stderr[-2000:]
    assert np.array_equal(np.load(tmp_path / "out.npy"), local.reconstruct(digits, 5))


def test_export_transforms_command_rebuilds_the_custom_op_free_export(trained, tmp_path,
                                                                      capsys):
    import shutil
    from tfrdp import cli
    model = tmp_path / "copy"
    shutil.copytree(trained[1], model)
    shutil.rmtree(model / "transforms")
    assert cli.main(["export-transforms", "--model", str(model)]) == 0
    assert (model / "transforms" / "1" / "saved_model.pb").is_file()
    assert cli.main(["export-transforms", "--model", str(model)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["export-transforms", "--model", str(model), "--overwrite"]) == 0
    assert sorted(p.name for p in (model / "transforms").iterdir()) == ["1"]
