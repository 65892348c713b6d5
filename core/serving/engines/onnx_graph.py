"""Edits to a converted model's graph after onnxruntime-genai's builder wrote it."""

from __future__ import annotations

import json
import re
from pathlib import Path

# The input of an adapter's copy saying, per row, whether its LoRA path counts (1) or not (0).
ROW_SWITCH = "lora_rows"
OUTPUT_PREFIX = "/lm_head/"  # the builder's names for the output layer's nodes
OUTPUT_LAYER = f"{OUTPUT_PREFIX}MatMul"  # and for its matmul
LOGITS, MASK = "logits", "attention_mask"  # the graph's output and input of those names
MATMULS = ("MatMul", "MatMulNBits")
BLOCK = 32  # weights per int8 scale, as the builder quantises the rest of the model


def graft_lora(base: Path, adapter_dir: Path, path: Path) -> None:
    """Write to `path` the graph of the converted base model in folder `base` (its weights
    stay in that folder's data file) with an adapter's LoRA paths added in fp32, each
    scaled per row by ROW_SWITCH, an input of shape (rows, 1, 1): 0 gives a row the base
    model's output, 1 the adapter's.

    The LoRA paths of modules reading one input (q, k and v; gate and up) share one
    low-rank matmul, and q, k and v stay packed: the builder's own adapter graphs give
    every module its own (1,247 operators against 887 for the bundled model with seven
    target modules), and cost a whole conversion per adapter."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(base / "model.onnx"), load_external_data=False)
    graph = model.graph
    matmuls = {node.name: node for node in graph.node if node.op_type in MATMULS}
    packed = _packed_offsets(json.loads((base / "genai_config.json").read_text()))
    groups: dict[str, list[tuple[object, int, object, object]]] = {}
    for module, (down, up) in _lora_weights(adapter_dir).items():
        node, offset = _target(matmuls, module, packed)
        groups.setdefault(node.input[0], []).append((node, offset, down, up))
    widths = _output_widths(graph, [part[0] for parts in groups.values() for part in parts])
    position = {node.name: index for index, node in enumerate(graph.node)}
    added, renamed, weights = {}, {}, []
    for number, (source, parts) in enumerate(groups.items()):
        last = max((part[0] for part in parts), key=lambda node: position[node.name])
        nodes, tensors, outputs = _lora_nodes(f"/lora.{number}", source, parts, widths)
        added[last.name] = nodes
        weights.extend(tensors)
        renamed.update(outputs)
    for node in graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]
    _splice(graph, lambda node: [node, *added.get(node.name, [])])
    graph.initializer.extend(weights)
    graph.input.append(
        helper.make_tensor_value_info(ROW_SWITCH, TensorProto.FLOAT, ["batch_size", 1, 1]))
    onnx.save(model, str(path))


def _splice(graph, replace) -> None:
    """The graph's nodes in order, each replaced by the nodes replace(node) returns (itself
    among them to keep it)."""
    nodes = [new for node in graph.node for new in replace(node)]
    del graph.node[:]
    graph.node.extend(nodes)


def _lora_weights(adapter_dir: Path) -> dict[str, tuple[object, object]]:
    """Per module path, the LoRA path as two fp32 matrices: (inputs, rank) and (rank,
    outputs), the adapter's scaling folded into the second."""
    import numpy as np
    from safetensors.numpy import load_file

    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    unsupported = [key for key in ("use_dora", "lora_bias", "alpha_pattern",
                                   "modules_to_save") if config.get(key)]
    if unsupported:
        raise ValueError(f"the fast engine runs plain LoRA adapters; this one sets "
                         f"{', '.join(unsupported)}")
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    modules = {}
    for key, value in tensors.items():
        module, _, kind = key.rpartition(".lora_")
        if kind not in ("A.weight", "B.weight"):
            raise ValueError(f"the fast engine runs LoRA on linear layers only, not {key}")
        modules.setdefault(module, {})[kind[0]] = value.astype(np.float32)
    weights = {}
    for module, pair in modules.items():
        rank = pair["A"].shape[0]
        scale = config["lora_alpha"] / (rank ** 0.5 if config.get("use_rslora") else rank)
        weights[module] = (pair["A"].T.copy(), pair["B"].T * scale)
    return weights


def _packed_offsets(genai_config: dict) -> dict[str, tuple[str, int]]:
    """Where the builder packs q, k and v into one matmul: each one's first output column."""
    decoder = genai_config["model"]["decoder"]
    queries = decoder["num_attention_heads"] * decoder["head_size"]
    keys = decoder["num_key_value_heads"] * decoder["head_size"]
    return {"q_proj": ("qkv_proj", 0), "k_proj": ("qkv_proj", queries),
            "v_proj": ("qkv_proj", queries + keys)}


def _target(matmuls: dict, module: str, packed: dict) -> tuple[object, int]:
    """The converted graph's matmul computing a peft module's outputs, and the first of its
    output columns that are the module's."""
    layer = re.search(r"\.layers\.(\d+)\.", module)
    name = module.rsplit(".", 1)[-1]
    candidates = [(name, 0), *([packed[name]] if name in packed else [])] if layer else []
    for candidate, offset in candidates:
        pattern = re.compile(rf"/model/layers\.{layer[1]}/[^/]+/{re.escape(candidate)}/MatMul")
        found = [node for key, node in matmuls.items() if pattern.match(key)]
        if len(found) == 1:
            return found[0], offset
    raise ValueError(f"no matmul in the converted model computes {module}")


def _lora_nodes(prefix: str, source: str, parts: list, widths: dict) -> tuple[list, list, dict]:
    """One group's nodes: its input times every module's A at once, switched per row, then
    per matmul one B holding its modules' rows and columns, added to that matmul's output.
    Returns the nodes, their weights, and each matmul output's new name."""
    import numpy as np
    from onnx import helper, numpy_helper

    down = np.concatenate([a for _, _, a, _ in parts], axis=1)
    ups: dict[str, tuple[object, object]] = {}
    row = 0
    for node, offset, _, b in parts:
        if node.name not in ups:
            ups[node.name] = (node, np.zeros((down.shape[1], widths[node.name]), np.float32))
        ups[node.name][1][row:row + len(b), offset:offset + b.shape[1]] = b
        row += len(b)
    low, switched = f"{prefix}/A/output_0", f"{prefix}/switched"
    arrays = {f"{prefix}.A": down}
    nodes = [helper.make_node("MatMul", [source, f"{prefix}.A"], [low], name=f"{prefix}/A"),
             helper.make_node("Mul", [low, ROW_SWITCH], [switched], name=f"{prefix}/switch")]
    outputs = {}
    for number, (node, up) in enumerate(ups.values()):
        delta, total = f"{prefix}/B.{number}", f"{node.output[0]}/with_lora"
        arrays[f"{prefix}.B.{number}"] = up
        nodes += [helper.make_node("MatMul", [switched, f"{prefix}.B.{number}"], [delta],
                                   name=delta),
                  helper.make_node("Add", [node.output[0], delta], [total], name=f"{delta}/Add")]
        outputs[node.output[0]] = total
    return nodes, [numpy_helper.from_array(v, k) for k, v in arrays.items()], outputs


def _output_widths(graph, matmuls: list) -> dict[str, int]:
    """Each matmul's number of output columns: MatMulNBits says it, a MatMul's weights show it."""
    dims = {tensor.name: tensor.dims for tensor in graph.initializer}
    return {node.name: next((a.i for a in node.attribute if a.name == "N"), None)
            or dims[node.input[1]][1] for node in matmuls}


def output_layer_on_last_positions(path: Path) -> bool:
    """Run the output layer on each row's last real position only, and give that row's
    logits for every position of the pass; False (the graph unchanged) where the graph has
    no output layer or attention mask to go by.

    onnxruntime-genai sizes the logits by the positions it sends and reads each row's last
    real one (rows are padded on the right); the builder's graph ran the output layer, a
    fifth of the bundled model's weights, on every prompt position. On int8 this took a
    43-token prompt's pass from 247 to 199 ms (docs/benchmarks.md)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    layer = next((node for node in graph.node if node.name.startswith(OUTPUT_PREFIX)), None)
    producer = next((node for node in graph.node if LOGITS in node.output), None)
    if layer is None or producer is None or MASK not in {i.name for i in graph.input}:
        return False
    hidden, name = layer.input[0], "/last_position"
    for node in graph.node:
        if node.name.startswith(OUTPUT_PREFIX):
            node.input[:] = [f"{name}/hidden" if x == hidden else x for x in node.input]
    producer.output[:] = [f"{name}/logits" if x == LOGITS else x for x in producer.output]
    graph.initializer.extend([numpy_helper.from_array(np.array([1], np.int64), f"{name}.one"),
                              numpy_helper.from_array(np.array([0], np.int64), f"{name}.zero")])
    chosen = _last_position_nodes(name, hidden)
    _splice(graph, lambda node: [*chosen, node] if node is layer else [node])
    graph.node.extend([
        helper.make_node("Concat", [f"{name}.one", f"{name}/positions", f"{name}.one"],
                         [f"{name}/spread"], axis=0, name=f"{name}/spread"),
        helper.make_node("Expand", [f"{name}/logits", f"{name}/spread"], [LOGITS],
                         name=f"{name}/every_position"),
    ])
    onnx.save(model, str(path))
    return True


def _last_position_nodes(name: str, hidden: str) -> list:
    """The hidden state at each row's last real position: the attention mask's ones, less
    the positions before this pass, less one (0 where a padded row is past its end)."""
    from onnx import helper

    def node(op, inputs, output, **attributes):
        return helper.make_node(op, inputs, [f"{name}/{output}"], name=f"{name}/{output}",
                                **attributes)

    return [
        node("Shape", [MASK], "seen", start=1),
        node("Shape", [hidden], "positions", start=1, end=2),
        node("Shape", [hidden], "width", start=2),
        node("ReduceSum", [MASK, f"{name}.one"], "real"),
        node("Sub", [f"{name}/seen", f"{name}/positions"], "before"),
        node("Add", [f"{name}/before", f"{name}.one"], "offset"),
        node("Sub", [f"{name}/real", f"{name}/offset"], "signed"),
        node("Max", [f"{name}/signed", f"{name}.zero"], "index"),
        node("Unsqueeze", [f"{name}/index", f"{name}.one"], "column"),
        node("Concat", [f"{name}.one", f"{name}.one", f"{name}/width"], "shape", axis=0),
        node("Expand", [f"{name}/column", f"{name}/shape"], "indices"),
        node("GatherElements", [hidden, f"{name}/indices"], "hidden", axis=1),
    ]


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
    _splice(graph, lambda node: _rescoring_nodes(name, hidden, layer.output[0], rows.shape)
            if node is layer else [node])
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
