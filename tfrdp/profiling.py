"""FLOP counts of traced TensorFlow functions, the device's measured matmul peak, its name.

Counts the multiply-adds of the matrix ops (convolutions in all three
directions and matrix products) that a traced step really runs: ops whose
results reach neither an output nor a variable update are pruned by
TensorFlow before running, so they are not counted either. Elementwise ops
are left out, as in the usual "model FLOPs utilisation" figure.
"""

import os
import platform
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

CONV_OPS = ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter")


def _dims(tensor):
    dims = tensor.shape.as_list()
    if any(dim is None for dim in dims):
        raise ValueError(f"{tensor.name} has no static shape {dims}: trace with fixed shapes")
    return dims


def op_flops(op):
    """2 x multiply-adds of one matrix op (0 for any other op)."""
    if op.type in CONV_OPS:
        # All three directions do the forward conv's multiply-adds:
        # every element of the conv output gradient meets kh*kw*cin weights.
        if op.type == "Conv2D":
            output, kernel = op.outputs[0], op.inputs[1]
        elif op.type == "Conv2DBackpropInput":
            output, kernel = op.inputs[2], op.inputs[1]
        else:
            output, kernel = op.inputs[2], op.outputs[0]
        kh, kw, cin, _ = _dims(kernel)
        return 2 * int(np.prod(_dims(output))) * kh * kw * cin
    if op.type in ("MatMul", "BatchMatMulV2"):
        a, b = _dims(op.inputs[0]), _dims(op.inputs[1])
        adjoint_a = op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x")
        adjoint_b = op.get_attr("transpose_b" if op.type == "MatMul" else "adj_y")
        rows = a[-1] if adjoint_a else a[-2]
        inner = a[-2] if adjoint_a else a[-1]
        cols = b[-2] if adjoint_b else b[-1]
        return 2 * int(np.prod(a[:-2], dtype=np.int64)) * rows * inner * cols
    return 0


def live_ops(graph):
    """Ops that feed the graph's outputs or a stateful op (variable updates, ...)."""
    roots = [tensor.op for tensor in graph.outputs]
    roots += [op for op in graph.get_operations() if op.op_def.is_stateful]
    live, pending = set(), roots
    while pending:
        op = pending.pop()
        if op not in live:
            live.add(op)
            pending.extend(tensor.op for tensor in op.inputs)
            pending.extend(op.control_inputs)
    return live


def step_flops(function, *input_specs):
    """({op type: FLOPs}, total) of one call of the tf.function `function`."""
    graph = function.get_concrete_function(*input_specs).graph
    by_type = {}
    for op in live_ops(graph):
        flops = op_flops(op)
        if flops:
            by_type[op.type] = by_type.get(op.type, 0) + flops
    return by_type, sum(by_type.values())


def matmul_peak(dtype=tf.float32, size=2048, seconds=2.0):
    """Best measured FLOP/s of square matrix products on the default device."""
    a = tf.random.normal([size, size], dtype=tf.float32)
    a = tf.cast(a, dtype)
    repeats = 8

    @tf.function
    def products():
        total = tf.constant(0.0)
        for _ in tf.range(repeats):
            # Using one element keeps every product live without a large sum.
            total += tf.cast(tf.matmul(a, a)[0, 0], tf.float32)
        return total

    products().numpy()
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        products().numpy()
        best = min(best, time.perf_counter() - started)
    return 2 * size ** 3 * repeats / best


def device_name():
    """What the benchmarks ran on, e.g. "2 cores AMD EPYC" or "1 x NVIDIA H200"."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"{len(gpus)} x {details.get('device_name', 'GPU')}"
    model = platform.processor() or "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores {model}"
