"""Export a registered adapter: the adapter folder, a merged safetensors model, or for
Llama-family models a GGUF file (f16/f32, written with the `gguf` package) with an
Ollama Modelfile beside it. A GGUF export is verified by loading it back with
transformers and comparing its logits with the merged model's."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

from core.errors import InvalidInput
from core.serving.models import check_safetensors, resolve_model_source
from core.store.registry import ModelRecord

FORMATS = ("adapter", "merged", "gguf-f16", "gguf-f32")
GGUF_FAMILIES = ("llama",)
TOLERANCE = {"gguf-f32": 1e-3, "gguf-f16": 5e-2}  # max |logit difference| on a probe prompt
CHATML_TEMPLATE = (
    "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{ range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n"
)
PLAIN_TEMPLATE = "{{ range .Messages }}{{ .Role }}: {{ .Content }}\n{{ end }}Assistant:"


# How llama.cpp's converter (convert_hf_to_gguf.py, get_vocab_base_pre) names a tokenizer's
# pre-tokenizer, the `tokenizer.ggml.pre` llama.cpp and Ollama split text by: the SHA-256 of the
# tokenizer's ids for this check text, looked up in its table (the byte-level BPE entries below).
PRE_CHECK_TEXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis "
    "concatenated) ✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 "
    "កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ ------======= нещо на Български "
    "''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? 'M not "
    "sure I'll make it, 'D you like some tea? We'Ve a'lL"
)
PRE_BY_HASH = {
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",
    "c136ed14d01c2745d4f60a9596ae66800e2b61fa45643e72436041855ad4089d": "smaug-bpe",
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",
    "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c": "qwen2",
    "049ecf7629871e3041641907f3de7c733e4dbfdc736f57d882ba0b0845599754": "deepseek-llm",
    "347715f544604f9118bb75ed199f68779f423cabb20db6de6f31b908d04d7821": "deepseek-coder",
    "35d91631860c815f952d711435f48d356ebac988362536bed955d43bfa436e34": "starcoder",
    "9d032fcbd5501f4a38150912590928bfb36091efb5df11b8e2124b0390e3fb1e": "falcon3",
    "63b97e4253352e6f357cc59ea5b583e3a680eaeaf2632188c2b952de2588485e": "tekken",
    "ccc2ef013c104be7bae2965776d611e1d7a8a2a9c547dd93a682c9a9fc80352e": "gpt-4o",
}


@dataclass(frozen=True)
class ExportResult:
    format: str
    path: Path
    files: list[str]
    max_logit_diff: float | None = None  # GGUF only: the verification's measured difference


def permute_qk(weights, n_head: int):
    """llama.cpp's rotary layout for q/k projections (transformers undoes it when loading)."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


class ModelExporter:
    def __init__(self, *, models_dir: Path, exports_dir: Path) -> None:
        self.models_dir = models_dir
        self.exports_dir = exports_dir

    def export(self, record: ModelRecord, fmt: str) -> ExportResult:
        if fmt not in FORMATS:
            raise InvalidInput(f"format must be one of {', '.join(FORMATS)}")
        target = self.exports_dir / record.id / fmt
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "adapter":
            shutil.copytree(record.adapter_dir, target)
            return ExportResult(fmt, target, sorted(p.name for p in target.iterdir()))
        merged = self.merge(record, target if fmt == "merged" else target / "merged")
        if fmt == "merged":
            return ExportResult(fmt, target, sorted(p.name for p in target.iterdir()))
        gguf_path = write_gguf(merged, target / f"{record.id}-{fmt[5:]}.gguf", fmt[5:])
        write_modelfile(merged, gguf_path)
        diff = verify_gguf(merged, gguf_path)
        shutil.rmtree(merged)
        if diff > TOLERANCE[fmt]:
            raise InvalidInput(f"the GGUF file does not match the merged model (max logit "
                               f"difference {diff:.4g}); it was kept at {gguf_path} for a look")
        return ExportResult(fmt, target, sorted(p.name for p in target.iterdir()), diff)

    def merge(self, record: ModelRecord, target: Path) -> Path:
        import torch
        from peft import PeftModel
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForSeq2SeqLM,
            AutoTokenizer,
        )

        source = resolve_model_source(record.base_model, self.models_dir)
        seq2seq = getattr(AutoConfig.from_pretrained(source), "is_encoder_decoder", False)
        auto = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
        base = auto.from_pretrained(source, dtype=torch.float32, use_safetensors=True)
        check_safetensors(Path(record.adapter_dir), adapter=True)
        merged = PeftModel.from_pretrained(base, record.adapter_dir).merge_and_unload()
        merged.save_pretrained(target)
        AutoTokenizer.from_pretrained(record.adapter_dir).save_pretrained(target)
        return target


def write_gguf(model_dir: Path, path: Path, precision: str) -> Path:
    import numpy as np
    import torch
    from gguf import MODEL_ARCH, GGUFWriter, LlamaFileType, TokenType
    from gguf.tensor_mapping import get_tensor_name_map
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = model.config
    if config.model_type not in GGUF_FAMILIES:
        raise InvalidInput(f"GGUF export supports Llama-family models, not {config.model_type!r}")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    n_head, n_kv = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    writer = GGUFWriter(str(path), "llama")
    writer.add_name(model_dir.parent.name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(getattr(config, "rope_theta", None) or
                                    config.rope_parameters.get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(LlamaFileType.MOSTLY_F16 if precision == "f16" else LlamaFileType.ALL_F32)
    add_tokenizer(writer, tokenizer, config.vocab_size, TokenType)
    names = get_tensor_name_map(MODEL_ARCH.LLAMA, config.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # llama.cpp and transformers reuse token_embd for a tied head
        data = tensor.numpy()
        if name.endswith("q_proj.weight"):
            data = permute_qk(data, n_head)
        elif name.endswith("k_proj.weight"):
            data = permute_qk(data, n_kv)
        new_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if new_name is None:
            raise InvalidInput(f"no GGUF name for tensor {name}")
        dtype = np.float16 if precision == "f16" and data.ndim == 2 else np.float32
        writer.add_tensor(new_name, data.astype(dtype))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def add_tokenizer(writer, tokenizer, vocab_size: int, token_type) -> None:
    """A byte-level BPE ('gpt2') vocabulary with merges, special tokens and chat template."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    if spec["model"]["type"] != "BPE":
        raise InvalidInput("GGUF export supports byte-level BPE tokenizers only")
    vocab = tokenizer.get_vocab()
    by_id = {index: token for token, index in vocab.items()}
    special = set(tokenizer.all_special_ids)
    tokens, types = [], []
    for index in range(vocab_size):
        tokens.append(by_id.get(index, f"[PAD{index}]"))
        types.append(token_type.CONTROL if index in special else
                     token_type.NORMAL if index in by_id else token_type.UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(tokenizer, spec))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for token_id, add in ((tokenizer.bos_token_id, writer.add_bos_token_id),
                          (tokenizer.eos_token_id, writer.add_eos_token_id),
                          (tokenizer.pad_token_id, writer.add_pad_token_id)):
        if token_id is not None:
            add(token_id)
    if getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)


def pre_tokenizer_name(tokenizer, spec: dict | None = None) -> str:
    """The name llama.cpp knows this tokenizer's pre-tokenizer by: from its table of check-text
    hashes, else (a vocabulary of its own) from the pre-tokenizer's structure."""
    digest = sha256(str(tokenizer.encode(PRE_CHECK_TEXT)).encode()).hexdigest()
    if digest in PRE_BY_HASH:
        return PRE_BY_HASH[digest]
    spec = spec or json.loads(tokenizer.backend_tokenizer.to_str())
    steps = _pre_steps(spec.get("pre_tokenizer"))
    byte_level = {"type": "ByteLevel", "use_regex": True}
    if [_shape(step) for step in steps] == [byte_level]:
        return "gpt-2"  # GPT-2's split
    if [_shape(step) for step in steps] == [{"type": "Digits", "individual_digits": True},
                                            byte_level]:  # fmt: skip
        return "smollm"  # each digit alone, then GPT-2's split
    raise InvalidInput(
        f"llama.cpp knows no pre-tokenizer like this tokenizer's (check hash {digest[:12]}); "
        "export the merged model instead"
    )


def _pre_steps(pre: dict | None) -> list[dict]:
    if pre is None:
        return []
    return pre["pretokenizers"] if pre.get("type") == "Sequence" else [pre]


def _shape(step: dict) -> dict:
    keep = {"ByteLevel": ("use_regex",), "Digits": ("individual_digits",)}.get(step["type"], ())
    return {"type": step["type"], **{key: step.get(key, True) for key in keep}}


def write_modelfile(model_dir: Path, gguf_path: Path) -> Path:
    """An Ollama Modelfile beside the GGUF: `ollama create NAME -f Modelfile`."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    chatml = "<|im_start|>" in (getattr(tokenizer, "chat_template", None) or "")
    lines = [f"FROM ./{gguf_path.name}",
             f'TEMPLATE """{CHATML_TEMPLATE if chatml else PLAIN_TEMPLATE}"""']
    lines += ['PARAMETER stop "<|im_end|>"'] if chatml else ['PARAMETER stop "User:"']
    path = gguf_path.parent / "Modelfile"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def verify_gguf(model_dir: Path, gguf_path: Path) -> float:
    """Max |logit difference| between the merged model and the GGUF loaded back."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    merged = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32).eval()
    ids = tokenizer("What is the capital of France? The capital", return_tensors="pt").input_ids
    with torch.no_grad():
        return float((merged(ids).logits - loaded(ids).logits).abs().max())
