"""Exports of a registered adapter: adapter folder, merged safetensors, GGUF + Modelfile."""

from __future__ import annotations

import pytest
import torch


def register_random_adapter(services, tiny_model_dir, tmp_path) -> str:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear",
                                            init_lora_weights=False))
    folder = tmp_path / "adapter"
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    services.registry.register(
        model_id="adapter-random", name="random", base_model=str(tiny_model_dir),
        adapter_dir=folder, job_id=None, config={}, dataset_id=None, dataset_version=None,
        metrics={}, duration_s=None, lineage={})
    return "adapter-random"


def test_exports_merge_and_write_a_verified_gguf(client, services, tiny_model_dir, tmp_path):
    model_id = register_random_adapter(services, tiny_model_dir, tmp_path)
    url = f"/api/v1/models/{model_id}/export"
    assert client.post(url, json={"format": "onnx"}).status_code == 422
    adapter = client.post(url, json={"format": "adapter"}).json()
    assert "adapter_model.safetensors" in adapter["files"]

    merged = client.post(url, json={"format": "merged"}).json()
    assert "model.safetensors" in merged["files"]
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[5, 6, 7, 8]])
    with services.models.use(services.registry.get(model_id).adapter_dir) as loaded:
        expected = loaded.model(ids).logits
    reloaded = AutoModelForCausalLM.from_pretrained(merged["path"])(ids).logits
    assert torch.allclose(expected, reloaded, atol=1e-4)

    for fmt, tolerance in (("gguf-f32", 1e-3), ("gguf-f16", 5e-2)):
        body = client.post(url, json={"format": fmt}).json()
        assert "Modelfile" in body["files"] and any(f.endswith(".gguf") for f in body["files"])
        assert body["max_logit_diff"] <= tolerance
    modelfile = (tmp_path / "data" / "exports" / "models" / model_id / "gguf-f16" / "Modelfile")
    assert modelfile.read_text().startswith("FROM ./adapter-random-f16.gguf")


# Digits, punctuation and non-ASCII: where pre-tokenizers disagree.
SPLIT_TEXT = "In 2024, 0123456789 apples cost $3.14!? — naïve café, 東京 'quoted' (x+y)=z;"
# llama.cpp's splits for the pre-tokenizer names the exporter writes (llama-vocab.cpp)
GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
LLAMA_CPP_SPLITS = {"gpt-2": [GPT2_SPLIT], "smollm": [r"\p{N}", GPT2_SPLIT]}


def gguf_vocabulary(path):
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    pre = reader.get_field("tokenizer.ggml.pre").contents()
    tokens = reader.get_field("tokenizer.ggml.tokens").contents()
    merges = reader.get_field("tokenizer.ggml.merges").contents()
    return pre, tokens, merges


def llama_cpp_ids(path, text: str) -> list[int]:
    """Token ids as llama.cpp would split the text: the file's own pre-tokenizer name, vocabulary
    and merges, applied with the regular expressions llama.cpp uses for that name."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    pre, tokens, merges = gguf_vocabulary(path)
    bpe = models.BPE({token: index for index, token in enumerate(tokens)},
                     [tuple(m.split(" ")) for m in merges])
    tokenizer = Tokenizer(bpe)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in LLAMA_CPP_SPLITS[pre]]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    return tokenizer.encode(text, add_special_tokens=False).ids


def digits_alone(tiny_model_dir, target):
    """The tiny model with a SmolLM-style pre-tokenizer: each digit alone, then GPT-2's split
    (its vocabulary has multi-digit tokens, so the two splits give different ids)."""
    import shutil

    from tokenizers import pre_tokenizers
    from transformers import AutoTokenizer

    shutil.copytree(tiny_model_dir, target)
    tokenizer = AutoTokenizer.from_pretrained(target)
    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True),
         pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.save_pretrained(target)
    return target


def test_gguf_export_names_the_pre_tokenizer_and_tokenises_like_the_model(tiny_model_dir,
                                                                           tmp_path):
    from transformers import AutoTokenizer

    from core.training.export import write_gguf

    for name, model_dir in (("gpt-2", tiny_model_dir),
                            ("smollm", digits_alone(tiny_model_dir, tmp_path / "digits"))):
        own = AutoTokenizer.from_pretrained(model_dir)
        path = write_gguf(model_dir, tmp_path / f"{name}.gguf", "f32")
        assert gguf_vocabulary(path)[0] == name
        expected = own(SPLIT_TEXT, add_special_tokens=False).input_ids
        assert llama_cpp_ids(path, SPLIT_TEXT) == expected
        assert own.decode(expected) == SPLIT_TEXT
        if name == "gpt-2":  # transformers reads GGUF tokenizers with GPT-2's split
            loaded = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            assert loaded(SPLIT_TEXT, add_special_tokens=False).input_ids == expected

    # The two splits differ on this vocabulary: a file naming the wrong one tokenises wrongly.
    digits = AutoTokenizer.from_pretrained(tmp_path / "digits")
    gpt2 = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert digits(SPLIT_TEXT).input_ids != gpt2(SPLIT_TEXT).input_ids


def test_a_pre_tokenizer_llama_cpp_does_not_know_is_refused(tiny_model_dir):
    from tokenizers import pre_tokenizers
    from transformers import AutoTokenizer

    from core.errors import InvalidInput
    from core.training.export import pre_tokenizer_name

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(InvalidInput, match="llama.cpp knows no pre-tokenizer"):
        pre_tokenizer_name(tokenizer)


@pytest.mark.slow
def test_the_bundled_tokenizer_is_named_as_in_the_bundled_gguf(real_model_cache, tmp_path):
    """The converted SmolLM2 tokenizer gets the bundled GGUF's own name (by its check hash), and
    an exported vocabulary splits text like the model's tokenizer."""
    from gguf import GGUFReader, GGUFWriter, TokenType
    from transformers import AutoTokenizer

    from core.serving.models import BUNDLED_NAME, bundled_gguf_path
    from core.training.export import add_tokenizer

    bundled = GGUFReader(str(bundled_gguf_path())).get_field("tokenizer.ggml.pre").contents()
    own = AutoTokenizer.from_pretrained(real_model_cache / BUNDLED_NAME)
    path = tmp_path / "vocab.gguf"
    writer = GGUFWriter(str(path), "llama")
    add_tokenizer(writer, own, len(own), TokenType)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert gguf_vocabulary(path)[0] == bundled == "smollm"
    expected = own(SPLIT_TEXT, add_special_tokens=False).input_ids
    assert llama_cpp_ids(path, SPLIT_TEXT) == expected
