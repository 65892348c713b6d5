"""Each model family trains a few steps with a tiny random model: Qwen2, GPT-2 (no chat
template, plain prompt format), T5 (encoder-decoder), and plain-text rows on Llama."""

from __future__ import annotations

import pytest

from core.training.data import IGNORE, encode_causal
from tests.tiny_models import make_tiny_gpt2, make_tiny_qwen2, make_tiny_t5, make_tokenizer
from tests.training_helpers import chat_rows, text_rows, wait_final

QUICK = {"max_steps": 2, "learning_rate": 1e-2, "batch_size": 2, "grad_accumulation": 2,
         "eval_every": 1}


def test_chat_rows_learn_only_the_assistant_answer():
    tokenizer = make_tokenizer(chat_template=True)
    example = encode_causal(tokenizer, chat_rows(1)[0], "sft", 512)
    learned = [t for t, label in zip(example.input_ids, example.labels, strict=True)
               if label != IGNORE]
    assert tokenizer.decode(learned).startswith("The capital of France is Paris.")
    text = encode_causal(tokenizer, text_rows()[0], "text", 512)
    assert text.labels == text.input_ids


@pytest.mark.parametrize("family,build,kind", [
    ("qwen2", make_tiny_qwen2, "sft"),
    ("gpt2", make_tiny_gpt2, "sft"),
    ("t5", make_tiny_t5, "sft"),
    ("llama-text", None, "text"),
])
def test_family_trains_and_registers(family, build, kind, services, tmp_path, tiny_model_dir):
    # Request paths may only name folders inside the data dir or model cache.
    model_dir = build(services.settings.models_dir / family) if build else tiny_model_dir
    rows = chat_rows(1) if kind == "sft" else text_rows()
    spec = services.training.make_spec({**QUICK, "base_model": str(model_dir)})
    job = services.training.submit(spec, train=rows, validation=rows[:2], kind=kind)
    job = wait_final(services.training, job.id)
    services.training.close()
    assert job.status == "completed", job.error
    model = services.registry.get(job.model_id)
    assert model.metrics["val_loss"] is not None
    assert len(services.training.history(job.id)["validation"]) == 2
