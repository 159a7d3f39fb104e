"""A published TFLite file rewritten for LiteRT without changing its arithmetic.

MobileFaceNet's file (services/embedder/models.py) was converted from TensorFlow 1 graphs in
which each PReLU is spelled as `relu(x) + a * (x - |x|)`: five element-wise passes over the
activation (RELU, ABS, SUB, MUL, ADD: 165 of its 230 ops) where XNNPACK has one PRELU kernel.
Its batch is also fixed at two (a RESHAPE with a constant [2, 192]), so one face runs as two.
`rewrite` replaces each such pattern with PRELU(x, 2a) and frees the batch dimension. The result
is exact, not approximately equal: for x < 0 the pattern computes a * (2x) and PRELU computes
(2a) * x, both exact doublings; for x >= 0 both give x. `rewrite` checks that on a batch of
random inputs before it returns (bit for bit at the file's batch; a single row to float
rounding), so a file it does not understand is refused, not mangled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from services.core.model_card import ModelError


def rewrite(source: Path, target: Path) -> dict[str, int]:
    """Write `source` to `target` with its PReLU patterns fused and its batch free; returns
    {"prelu_fused": n, "ops_before": n, "ops_after": n}. ModelError if the result's outputs are
    not exactly the source's."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(source))
    graph = model.subgraphs[0]
    ops_before = len(graph.operators)
    fused = _fuse_prelu(model, graph, schema)
    shape = tuple(int(d) for d in graph.tensors[graph.inputs[0]].shape)  # the published input, fixed batch first
    _free_batch(model, graph, shape[0], schema)
    flatbuffer_utils.write_model(model, str(target))
    _check_same_outputs(source, target, shape)
    return {"prelu_fused": fused, "ops_before": ops_before, "ops_after": len(graph.operators)}


def _fuse_prelu(model: Any, graph: Any, schema: Any) -> int:
    ops = schema.BuiltinOperator
    names = {getattr(ops, k): k for k in dir(ops) if not k.startswith("_")}

    def kind(op: Any) -> str:
        code = model.operatorCodes[op.opcodeIndex]
        return names[max(code.builtinCode, code.deprecatedBuiltinCode)]  # small codes live in the deprecated field

    def constant(tensor: int) -> np.ndarray | None:
        data = model.buffers[graph.tensors[tensor].buffer].data
        return None if data is None or len(data) == 0 else np.frombuffer(bytes(data), np.float32)

    producer = {int(t): op for op in graph.operators for t in op.outputs}
    readers: dict[int, int] = {}
    for op in graph.operators:
        for t in op.inputs:
            readers[int(t)] = readers.get(int(t), 0) + 1
    prelu = schema.OperatorCodeT()
    prelu.builtinCode = prelu.deprecatedBuiltinCode = ops.PRELU
    prelu.version = 1
    model.operatorCodes.append(prelu)
    dropped: set[int] = set()
    kept, fused_count = [], 0
    for op in graph.operators:
        pattern = _prelu_pattern(op, producer, readers, kind, constant)
        if pattern is None:
            kept.append(op)
            continue
        x, slope, parts = pattern
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(slope.astype(np.float32).tobytes(), np.uint8)
        model.buffers.append(buffer)
        tensor = schema.TensorT()
        tensor.shape = np.array([1, 1, len(slope)], np.int32)  # per channel, broadcast over N, H, W
        tensor.type = schema.TensorType.FLOAT32
        tensor.buffer = len(model.buffers) - 1
        tensor.name = graph.tensors[op.outputs[0]].name + b"/prelu_slope"
        graph.tensors.append(tensor)
        fused = schema.OperatorT()
        fused.opcodeIndex = len(model.operatorCodes) - 1
        fused.inputs = np.array([x, len(graph.tensors) - 1], np.int32)
        fused.outputs = np.array(list(op.outputs), np.int32)
        kept.append(fused)
        dropped.update(id(p) for p in parts)
        fused_count += 1
    graph.operators = [op for op in kept if id(op) not in dropped]
    return fused_count


def _prelu_pattern(op: Any, producer: dict[int, Any], readers: dict[int, int], kind: Any,
                   constant: Any) -> tuple[int, np.ndarray, list[Any]] | None:
    """(x, slope, the four ops it replaces) if `op` is ADD(RELU(x), MUL(a, SUB(x, ABS(x)))) and
    nothing else reads the intermediate results; else None."""
    if kind(op) != "ADD" or len(op.inputs) != 2:
        return None
    found = {kind(p): p for p in (producer.get(int(t)) for t in op.inputs) if p is not None}
    relu, mul = found.get("RELU"), found.get("MUL")
    if relu is None or mul is None or len(mul.inputs) != 2:
        return None
    slopes = [constant(int(t)) for t in mul.inputs]
    if sum(s is not None for s in slopes) != 1:
        return None
    half = next(s for s in slopes if s is not None)
    sub = producer.get(next(int(t) for t, s in zip(mul.inputs, slopes, strict=True) if s is None))
    if sub is None or kind(sub) != "SUB" or len(sub.inputs) != 2:
        return None
    absolute = producer.get(int(sub.inputs[1]))
    x = int(relu.inputs[0])
    if absolute is None or kind(absolute) != "ABS" or int(sub.inputs[0]) != x or int(absolute.inputs[0]) != x:
        return None
    if any(readers.get(int(t), 0) != 1 for p in (relu, mul, sub, absolute) for t in p.outputs):
        return None  # an intermediate result someone else reads: not this pattern
    return x, 2 * half, [relu, mul, sub, absolute]


def _free_batch(model: Any, graph: Any, batch: int, schema: Any) -> None:
    """Batch -1 in the input and output signatures and in any constant RESHAPE target that
    spells the fixed batch."""
    for t in (*graph.inputs, *graph.outputs):
        shape = np.array(graph.tensors[t].shape, np.int32)
        shape[0] = -1
        graph.tensors[t].shapeSignature = shape
    for op in graph.operators:
        if len(op.inputs) == 2 and graph.tensors[op.inputs[1]].type == schema.TensorType.INT32:  # a RESHAPE's target
            data = model.buffers[graph.tensors[op.inputs[1]].buffer].data
            if data is not None and len(data) == 8:
                target = np.frombuffer(bytes(data), np.int32).copy()
                if target[0] == batch and graph.tensors[op.outputs[0]].shape[0] == batch:
                    target[0] = -1
                    model.buffers[graph.tensors[op.inputs[1]].buffer].data = np.frombuffer(target.tobytes(), np.uint8)


def _check_same_outputs(source: Path, target: Path, shape: tuple[int, ...]) -> None:
    from ai_edge_litert.interpreter import Interpreter

    batch = shape[0]
    inputs = np.random.default_rng(0).uniform(-1.0, 1.0, shape).astype(np.float32)
    outputs = []
    for path, rows in ((source, batch), (target, batch), (target, 1)):
        interpreter = Interpreter(model_path=str(path))
        index = interpreter.get_input_details()[0]["index"]
        if rows != batch:
            interpreter.resize_tensor_input(index, [rows, *shape[1:]])
        interpreter.allocate_tensors()
        interpreter.set_tensor(index, inputs[:rows])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy())
    # the same batch: bit for bit; one row alone may take another kernel path: to float rounding
    if not np.array_equal(outputs[0], outputs[1]) or not np.allclose(outputs[0][:1], outputs[2], rtol=0, atol=1e-5):
        worst = float(max(np.abs(outputs[0] - outputs[1]).max(), np.abs(outputs[0][:1] - outputs[2]).max()))
        raise ModelError(f"rewriting {source} changed its outputs (by up to {worst:g}); refusing the rewrite")
