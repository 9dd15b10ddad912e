"""`tfrdp serve`: TensorFlow Serving's REST API for the SavedModels in a folder.

    GET  /v1/models/NAME                  model status
    GET  /v1/models/NAME/metadata         signature definitions
    POST /v1/models/NAME:predict          {"signature_name", "instances" | "inputs"}
    POST /v1/models/NAME:compress         PNG or .npy body -> a .rdp file
    POST /v1/models/NAME:decompress       .rdp body -> PNG (a contact sheet if N > 1),
                                          or .npy with ?format=npy

Runs on Starlette under uvicorn. TensorFlow calls run in a worker thread so a
slow request never blocks the event loop for the others. Bad input is a 4xx
answer with {"error": reason}, never a 500.
"""

import base64
import copy
import io
import json
import logging
import socket
from pathlib import Path

import numpy as np

from tfrdp.errors import TfrdpError

DEFAULT_MAX_REQUEST_BYTES = 16 * 2**20
VERSION = "1"
DEFAULT_SIGNATURE = "serving_default"  # TF Serving's default; here an alias of reconstruct
_DT_NAMES = {"uint8": "DT_UINT8", "int32": "DT_INT32", "int64": "DT_INT64",
             "string": "DT_STRING", "float32": "DT_FLOAT"}


class RequestError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def find_models(model_dir):
    """{folder name: path} of the SavedModels directly under `model_dir`."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise TfrdpError(f"model folder {model_dir} does not exist")
    models = {p.name: p for p in sorted(model_dir.iterdir())
              if (p / "saved_model.pb").is_file() and not p.name.startswith(".")}
    if not models:
        raise TfrdpError(f"no SavedModels in {model_dir} (each model is a folder holding "
                         "saved_model.pb)")
    return models


class ServedModel:
    """One SavedModel: its signatures, and the file codec when it is a tfrdp model."""

    def __init__(self, name, path):
        import tensorflow as tf
        from tfrdp.codec import Codec
        from tfrdp.export import METADATA_FILE
        self.name = name
        self.tf = tf
        self.codec = Codec(path) if (path / "assets" / METADATA_FILE).is_file() else None
        self.model = self.codec.saved_model if self.codec else tf.saved_model.load(str(path))
        self.signatures = dict(self.model.signatures)

    def signature(self, name):
        name = name or DEFAULT_SIGNATURE
        if name == DEFAULT_SIGNATURE and name not in self.signatures:
            name = "reconstruct"
        if name not in self.signatures:
            raise RequestError(404, f"model {self.name} has no signature {name!r} (it has "
                               f"{', '.join(sorted(self.signatures))})")
        return self.signatures[name]

    @staticmethod
    def inputs_of(function):
        return function.structured_input_signature[1]

    @staticmethod
    def outputs_of(function):
        return function.structured_outputs

    def metadata(self):
        def describe(specs):
            return {key: {"dtype": _DT_NAMES.get(spec.dtype.name, spec.dtype.name),
                          "tensor_shape": {"dim": [{"size": str(-1 if d is None else d),
                                                    "name": ""} for d in spec.shape.as_list()],
                                           "unknown_rank": False},
                          "name": key} for key, spec in specs.items()}
        signatures = {name: {"inputs": describe(self.inputs_of(fn)),
                             "outputs": describe(self.outputs_of(fn)),
                             "method_name": "tensorflow/serving/predict"}
                      for name, fn in self.signatures.items()}
        return {"model_spec": {"name": self.name, "signature_name": "", "version": VERSION},
                "metadata": {"signature_def": {"signature_def": signatures}}}

    def run(self, function, inputs):
        tf = self.tf
        try:
            outputs = function(**{key: tf.constant(value) for key, value in inputs.items()})
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as error:
            raise RequestError(400, f"the model rejected the input: {_reason(error)}") from None
        return {key: np.asarray(value.numpy(), dtype=object if value.dtype == tf.string
                                else None) for key, value in outputs.items()}


def _reason(error):
    """The informative line of a TensorFlow error (not its graph-execution preamble)."""
    lines = [line.strip() for line in str(getattr(error, "message", error)).splitlines()
             if line.strip()]
    for line in lines:
        if "assertion failed" in line or "Sanity check" in line:
            return line[:300]
    return (lines[-1] if lines else type(error).__name__)[:300]


# Tensors between JSON and numpy.

def _decode_strings(value, name):
    if isinstance(value, list):
        return [_decode_strings(item, name) for item in value]
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except ValueError:
            raise RequestError(400, f"input {name!r}: invalid base64") from None
    if isinstance(value, str):
        return value.encode("utf-8")
    raise RequestError(400, f"input {name!r}: expected strings or {{\"b64\": ...}} objects")


def to_tensor(value, spec, name):
    """A JSON value as a numpy array matching `spec` (dtype, rank, fixed dims), or a 400."""
    if spec.dtype.name == "string":
        array = np.array(_decode_strings(value, name), dtype=object)
    else:
        try:
            array = np.array(value)
        except ValueError:
            raise RequestError(400, f"input {name!r}: ragged nested lists") from None
        if array.dtype.kind not in "iuf" or array.dtype == np.bool_:
            raise RequestError(400, f"input {name!r}: expected numbers of type "
                               f"{spec.dtype.name}")
        target = np.dtype(spec.dtype.as_numpy_dtype)
        if target.kind in "iu":
            if array.dtype.kind == "f" and not np.all(np.equal(np.mod(array, 1), 0)):
                raise RequestError(400, f"input {name!r}: expected integers")
            limits = np.iinfo(target)
            if array.size and (array.min() < limits.min or array.max() > limits.max):
                raise RequestError(400, f"input {name!r}: values outside {spec.dtype.name} "
                                   f"range [{limits.min}, {limits.max}]")
        array = array.astype(target)
    expected = spec.shape.as_list()
    if array.ndim != len(expected) or any(
            want is not None and want != got for want, got in zip(expected, array.shape)):
        shown = ["N" if d is None else d for d in expected]
        raise RequestError(400, f"input {name!r}: expected shape {shown}, got "
                           f"{list(array.shape)}")
    return array


def to_json(array):
    if array.dtype == object:
        def encode(item):
            return [encode(x) for x in item] if isinstance(item, list) else \
                {"b64": base64.b64encode(item).decode("ascii")}
        return encode(array.tolist())
    return array.tolist()


def _row_inputs(instances, specs):
    if not isinstance(instances, list) or not instances:
        raise RequestError(400, "\"instances\" must be a non-empty list")
    if not all(isinstance(row, dict) for row in instances):
        if len(specs) != 1:
            raise RequestError(400, f"each instance must be an object with the inputs "
                               f"{sorted(specs)}")
        instances = [{next(iter(specs)): row} for row in instances]
    inputs = {}
    for key, spec in specs.items():
        if any(key not in row for row in instances):
            raise RequestError(400, f"every instance needs the input {key!r}")
        values = [row[key] for row in instances]
        if spec.shape.rank == 0:  # not batched: the same in every instance
            if any(value != values[0] for value in values):
                raise RequestError(400, f"input {key!r} has no batch dimension and must be "
                                   "the same in every instance")
            inputs[key] = to_tensor(values[0], spec, key)
        else:
            inputs[key] = to_tensor(values, spec, key)
    extra = {key for row in instances for key in row} - set(specs)
    if extra:
        raise RequestError(400, f"unknown input(s) {sorted(extra)}; expected {sorted(specs)}")
    return inputs


def _column_inputs(inputs, specs):
    if not isinstance(inputs, dict) or set(inputs) != set(specs):
        if len(specs) == 1 and not isinstance(inputs, dict):
            inputs = {next(iter(specs)): inputs}
        else:
            raise RequestError(400, f"\"inputs\" must be an object with exactly the inputs "
                               f"{sorted(specs)}")
    return {key: to_tensor(inputs[key], spec, key) for key, spec in specs.items()}


def predict(served, body):
    """Answers a :predict request body (parsed JSON) with TF Serving's response object."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    function = served.signature(body.get("signature_name"))
    specs = served.inputs_of(function)
    if ("instances" in body) == ("inputs" in body):
        raise RequestError(400, "give exactly one of \"instances\" (row format) or \"inputs\" "
                           "(columnar format)")
    if "instances" in body:
        outputs = served.run(function, _row_inputs(body["instances"], specs))
        batched = all(spec.shape.rank for spec in served.outputs_of(function).values())
        if not batched:
            return {"predictions": [{key: to_json(value) for key, value in outputs.items()}]}
        rows = len(next(iter(outputs.values())))
        if len(outputs) == 1:
            return {"predictions": to_json(next(iter(outputs.values())))}
        return {"predictions": [{key: to_json(value[i]) for key, value in outputs.items()}
                                for i in range(rows)]}
    outputs = served.run(function, _column_inputs(body["inputs"], specs))
    if len(outputs) == 1:
        return {"outputs": to_json(next(iter(outputs.values())))}
    return {"outputs": {key: to_json(value) for key, value in outputs.items()}}


def compress_body(served, content, seed):
    from tfrdp import imageio
    if served.codec is None:
        raise RequestError(404, f"model {served.name} is not a tfrdp codec")
    try:
        digits = imageio.digits_from_bytes(content, "request body")
    except TfrdpError as error:
        raise RequestError(400, str(error)) from None
    return served.codec.compress(digits, seed)


def decompress_body(served, content, form):
    from tfrdp import fileformat, imageio
    if served.codec is None:
        raise RequestError(404, f"model {served.name} is not a tfrdp codec")
    try:
        header, payload = fileformat.unpack(content)
        digits = served.codec.decompress(header, payload)
    except TfrdpError as error:
        raise RequestError(400, str(error)) from None
    if form == "npy":
        buffer = io.BytesIO()
        np.save(buffer, digits)
        return buffer.getvalue(), "application/octet-stream"
    image = digits[0] if len(digits) == 1 else imageio.grid(digits)
    return imageio.encode_png(image), "image/png"


def create_app(models, max_request_bytes=DEFAULT_MAX_REQUEST_BYTES):
    """The Starlette app serving `models` ({name: ServedModel})."""
    import secrets

    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    def error(status, message):
        return JSONResponse({"error": message}, status_code=status)

    def model_named(name):
        if name not in models:
            raise RequestError(404, f"no model named {name!r} (serving "
                               f"{', '.join(sorted(models))})")
        return models[name]

    async def read_body(request):
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_request_bytes:
            raise RequestError(413, f"request body over {max_request_bytes} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_request_bytes:
                raise RequestError(413, f"request body over {max_request_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def status(request):
        model_named(request.path_params["name"])
        return JSONResponse({"model_version_status": [{
            "version": VERSION, "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""}}]})

    async def metadata(request):
        return JSONResponse(model_named(request.path_params["name"]).metadata())

    async def post(request):
        name, _, verb = request.path_params["target"].rpartition(":")
        served = model_named(name)
        if verb not in ("predict", "compress", "decompress"):
            raise RequestError(404, f"unknown method {verb!r}: use :predict, :compress or "
                               ":decompress")
        content = await read_body(request)
        if verb == "predict":
            try:
                body = json.loads(content)
            except (json.JSONDecodeError, UnicodeDecodeError) as problem:
                raise RequestError(400, f"malformed JSON: {problem}") from None
            return JSONResponse(await run_in_threadpool(predict, served, body))
        if verb == "compress":
            seed = request.query_params.get("seed")
            if seed is not None and not (seed.isdigit() and int(seed) < 2**32):
                raise RequestError(400, "seed must be an integer in [0, 2^32)")
            seed = secrets.randbelow(2**32) if seed is None else int(seed)
            packed = await run_in_threadpool(compress_body, served, content, seed)
            return Response(packed, media_type="application/octet-stream")
        form = request.query_params.get("format", "png")
        if form not in ("png", "npy"):
            raise RequestError(400, "format must be png or npy")
        answer, media_type = await run_in_threadpool(decompress_body, served, content, form)
        return Response(answer, media_type=media_type)

    def guarded(handler):
        async def endpoint(request):
            try:
                return await handler(request)
            except RequestError as problem:
                return error(problem.status, str(problem))
            except Exception as problem:  # a bug of ours: say so, keep serving
                logging.getLogger("tfrdp.serve").exception("internal error")
                return error(500, f"internal error: {type(problem).__name__}: {problem}")
        return endpoint

    routes = [
        Route("/v1/models/{name}", guarded(status), methods=["GET"]),
        Route("/v1/models/{name}/metadata", guarded(metadata), methods=["GET"]),
        Route("/v1/models/{target}", guarded(post), methods=["POST"]),
    ]
    return Starlette(routes=routes)


def bind(host, port):
    """A listening socket, or a one-line error naming the taken port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except OSError as problem:
        sock.close()
        raise TfrdpError(f"cannot listen on {host}:{port}: {problem.strerror}") from None
    sock.listen(128)
    return sock


def serve(model_dir, host="127.0.0.1", port=8501, max_request_bytes=DEFAULT_MAX_REQUEST_BYTES):
    import uvicorn
    paths = find_models(model_dir)
    sock = bind(host, port)
    models = {name: ServedModel(name, path) for name, path in paths.items()}
    app = create_app(models, max_request_bytes)
    actual_port = sock.getsockname()[1]
    print(f"Serving {len(models)} model(s) ({', '.join(models)}) on "
          f"http://{host}:{actual_port}/v1/models/", flush=True)
    # All logging, a line per request included, goes to stderr; stdout carries only
    # the line above, which scripts read to learn the port.
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    config = uvicorn.Config(app, log_level="info", access_log=True, log_config=log_config)
    uvicorn.Server(config).run(sockets=[sock])
