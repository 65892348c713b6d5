"""Tiny random models and tokenizers built from configs: real transformers code, no download."""

from __future__ import annotations

from pathlib import Path

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "What is the capital of France? The capital of France is Paris.",
    "Hello, how are you today? I am fine, thank you for asking.",
    "Refinery turns documents and feedback into a better language model.",
    "The quick brown fox jumps over the lazy dog. 0123456789 !?.,;:'\"()[]{}",
] * 20


def make_tokenizer(*, chat_template: bool = True):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator(CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="<unk>",
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>" if chat_template else "<|endoftext|>",
        bos_token="<|im_start|>",
        model_max_length=256,
    )
    if chat_template:
        tokenizer.chat_template = CHATML
    return tokenizer


def make_tiny_llama(
    path: Path, *, chat_template: bool = True, context: int = 256, seed: int = 0
) -> Path:
    """A 2-layer, width-32 Llama with a real BPE tokenizer, saved as safetensors."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = make_tokenizer(chat_template=chat_template)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=context,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _save_tiny(model_class, config, tokenizer, path: Path, seed: int) -> Path:
    import torch

    torch.manual_seed(seed)
    model = model_class(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_tiny_qwen2(path: Path, *, seed: int = 0) -> Path:
    """A 2-layer, width-32 Qwen2 with a ChatML template."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = make_tokenizer(chat_template=True)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return _save_tiny(Qwen2ForCausalLM, config, tokenizer, path, seed)


def make_tiny_gpt2(path: Path, *, seed: int = 0) -> Path:
    """A 2-layer, width-32 GPT-2 without a chat template (the plain prompt format)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = make_tokenizer(chat_template=False)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=256,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    return _save_tiny(GPT2LMHeadModel, config, tokenizer, path, seed)


def make_tiny_t5(path: Path, *, seed: int = 0) -> Path:
    """A 2-layer, width-32 T5 encoder-decoder."""
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = make_tokenizer(chat_template=False)
    config = T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return _save_tiny(T5ForConditionalGeneration, config, tokenizer, path, seed)


XSS_PAYLOAD = ('<script>window.__xss=1</script>', '<img src=x onerror="window.__xss=1">')


def make_parrot_llama(path: Path, payload: tuple[str, ...] = XSS_PAYLOAD) -> Path:
    """A 1-layer Llama whose greedy answer to any ChatML prompt is `payload`, one token a piece.

    Word-level vocabulary, one-hot embeddings, zero attention and MLP weights: the residual
    stream carries the current token, and lm_head maps each token to its successor
    ("assistant" -> piece 1 -> piece 2 ... -> <|im_end|>). A real model emitting real tokens.
    """
    import torch
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    words = ["user", "assistant", "system"]
    vocab = {token: index for index, token in enumerate([*specials, *words, *payload])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.add_special_tokens([AddedToken(token, special=True) for token in specials])
    core.add_tokens([AddedToken(piece, normalized=False) for piece in payload])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", pad_token="<|endoftext|>",
        eos_token="<|im_end|>", bos_token="<|im_start|>", model_max_length=2048,
    )  # fmt: skip
    tokenizer.chat_template = CHATML
    size = len(vocab)
    width = size + size % 2  # rotary embeddings need an even head size
    config = LlamaConfig(
        vocab_size=size, hidden_size=width, intermediate_size=width, num_hidden_layers=1,
        num_attention_heads=1, num_key_value_heads=1, max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    chain = [vocab["assistant"], *(vocab[piece] for piece in payload), tokenizer.eos_token_id]
    successor = torch.full((size,), tokenizer.eos_token_id)
    successor[chain[:-1]] = torch.tensor(chain[1:])
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "layers.0" in name and "layernorm" not in name:
                weight.zero_()
        model.model.embed_tokens.weight.copy_(torch.eye(size, width))
        model.lm_head.weight.zero_()
        model.lm_head.weight[successor, torch.arange(size)] = 20.0  # decisive even when sampling
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
