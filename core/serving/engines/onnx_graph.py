"""Edits to a converted model's graph after onnxruntime-genai's builder wrote it."""

from __future__ import annotations

from pathlib import Path

# The input of an adapter's copy saying, per row, whether its LoRA path counts (1) or not (0).
ROW_SWITCH = "lora_rows"
OUTPUT_LAYER = "/lm_head/MatMul"  # the builder's name for the output layer's matmul
BLOCK = 32  # weights per int8 scale, as the builder quantises the rest of the model


def switch_lora_per_row(path: Path) -> None:
    """Scale each LoRA path's low-rank activations by ROW_SWITCH, an input of shape
    (rows, 1, 1): 0 gives that row the base model's output, 1 the adapter's."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path), load_external_data=False)  # the weights stay where they are
    graph = model.graph
    low_rank = {node.name for node in graph.node
                if "/lora_B/" in node.name and node.op_type in ("MatMul", "MatMulNBits")}
    if not low_rank:
        raise RuntimeError("the converted adapter has no LoRA matmuls to switch")
    nodes = []
    for node in graph.node:
        if node.name in low_rank:
            switched = f"{node.input[0]}/{ROW_SWITCH}"
            nodes.append(helper.make_node("Mul", [node.input[0], ROW_SWITCH], [switched],
                                          name=f"{node.name}/{ROW_SWITCH}"))
            node.input[0] = switched
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.input.append(
        helper.make_tensor_value_info(ROW_SWITCH, TensorProto.FLOAT, ["batch_size", 1, 1]))
    onnx.save(model, str(path))


def rescore_output_layer(path: Path, exact_top: int) -> bool:
    """Run the fp32 output layer in int8, then compute the exact_top highest logits again
    in fp32 from the original weights; False (the graph unchanged) where the model has no
    such layer to rescore.

    The output layer is a fifth of the bundled model's weights and, in fp32, as many bytes
    per step as the int8 rest of the model; quantised outright, its logits moved enough to
    change answers. Choosing, sampling and log-probabilities only look at the top few
    logits, and those are now the fp32 layer's own; only the tail stays approximate."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))  # with its weights: they are written out again below
    graph = model.graph
    layer = next((node for node in graph.node if node.name == OUTPUT_LAYER
                  and node.op_type == "MatMul"), None)
    weights = layer and next((i for i in graph.initializer if i.name == layer.input[1]), None)
    if weights is None or weights.dims[0] % BLOCK:
        return False
    hidden, weight_name = layer.input
    rows = np.ascontiguousarray(numpy_helper.to_array(weights).T)  # one row per token
    name = OUTPUT_LAYER.rsplit("/", 1)[0]
    _read_rows_for_transposes(graph, weight_name, f"{name}.rows")
    if not any(weight_name in node.input for node in graph.node if node is not layer):
        graph.initializer.remove(weights)
    quantised, scales = _int8_blocks(rows)
    constants = {
        f"{name}.int8": quantised, f"{name}.scales": scales, f"{name}.rows": rows,
        f"{name}.top": np.array([min(exact_top, len(rows))], np.int64),
        f"{name}.last_axis": np.array([-1], np.int64),
    }
    graph.initializer.extend(numpy_helper.from_array(value, key)
                             for key, value in constants.items())
    if not any(opset.domain == "com.microsoft" for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    nodes = []
    for node in graph.node:
        nodes.extend(_rescoring_nodes(name, hidden, layer.output[0], rows.shape)
                     if node is layer else [node])
    del graph.node[:]
    graph.node.extend(nodes)
    data = path.with_name(f"{path.name}.data")
    data.unlink(missing_ok=True)  # rewritten whole: the old fp32 layer's bytes go with it
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location=data.name)
    return True


def _rescoring_nodes(name: str, hidden: str, logits: str, shape: tuple[int, int]) -> list:
    """int8 logits, their top ids, those ids' fp32 rows times the hidden state, and the
    exact values written over the approximate ones."""
    from onnx import helper

    vocab, width = shape
    approx, top_ids, top_rows, column, exact = (
        f"{name}/{part}" for part in ("approx", "top_ids", "top_rows", "column", "exact"))
    return [
        # no zero points: MatMulNBits' default of 128 makes the stored bytes signed
        helper.make_node("MatMulNBits", [hidden, f"{name}.int8", f"{name}.scales"], [approx],
                         domain="com.microsoft", K=width, N=vocab, bits=8, block_size=BLOCK,
                         accuracy_level=4, name=f"{name}/MatMul_Q8"),
        helper.make_node("TopK", [approx, f"{name}.top"], [f"{name}/top_values", top_ids],
                         axis=-1, name=f"{name}/TopK"),
        helper.make_node("Gather", [f"{name}.rows", top_ids], [top_rows], axis=0,
                         name=f"{name}/Gather"),
        helper.make_node("Unsqueeze", [hidden, f"{name}.last_axis"], [column],
                         name=f"{name}/Unsqueeze"),
        helper.make_node("MatMul", [top_rows, column], [f"{exact}_column"], name=f"{name}/Exact"),
        helper.make_node("Squeeze", [f"{exact}_column", f"{name}.last_axis"], [exact],
                         name=f"{name}/Squeeze"),
        helper.make_node("ScatterElements", [approx, top_ids, exact], [logits], axis=-1,
                         name=f"{name}/Scatter"),
    ]


def _read_rows_for_transposes(graph, weight_name: str, rows_name: str) -> None:
    """Where the embedding shares the output layer's weights (a Transpose of them, in
    models with tied embeddings), read the transposed rows instead: one copy, not two."""
    for node in graph.node:
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), [1, 0])
        if node.op_type == "Transpose" and list(node.input) == [weight_name] and perm == [1, 0]:
            node.op_type = "Identity"
            node.input[0] = rows_name
            del node.attribute[:]


def _int8_blocks(rows):
    """Symmetric int8 per BLOCK weights along each row, as MatMulNBits reads them:
    bytes of shape (rows, blocks, BLOCK) offset by 128, and one scale per block. (onnxruntime's
    MatMulNBitsQuantizer does this too, but importing it sets the app's root logging to INFO.)"""
    import numpy as np

    count, width = rows.shape
    blocks = rows.reshape(count, width // BLOCK, BLOCK).astype(np.float32)
    scales = np.abs(blocks).max(axis=-1) / 127
    scales[scales == 0] = 1  # an all-zero block stays zero
    quantised = np.clip(np.rint(blocks / scales[..., None]), -127, 127) + 128
    return quantised.astype(np.uint8), scales.astype(np.float32)
