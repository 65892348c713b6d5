"""Engines: what turns prompt tokens into answer tokens, behind one generation path.

Every answer (chat, the Compare tab's pairs, evaluation, synthetic data, probes) is
`Engine.generate(loaded, prompts, options, stop_event)`: rows of prepared prompts in, an
iterable of (row, text piece) out, then one GenerationResult per row (timing, token
counts, optional confidence, finish reason). Local engines share TokenRows
(core/serving/engines/rows.py), which decodes the tokens an engine yields step by step and applies
the repeated-n-gram stop; a remote engine (an OpenAI-compatible server) would implement
`generate` itself from `prompt.messages`.

- `transformers` (core/serving/engines/transformers_engine.py): the reference; GPU; training,
  SHAP/LIME forward passes and adapters not yet converted use it.
- `onnx` / `onnx-int8` / `onnx-fp32` (core/serving/engines/onnx.py): onnxruntime-genai on
  CPU, the model converted once (int4, int8 or fp32 weights); an adapter gets a converted
  copy with its LoRA path behind a per-row switch (base and adapter rows in one pass), built
  in the background while transformers answers.
- `openai` (core/serving/engines/openai_remote.py): an OpenAI-compatible server (vLLM, llama.cpp,
  Ollama, TGI, another Refinery) answers; adapters are addressed by registry id.

`--engine auto` is `onnx-fp32` on a CPU when onnxruntime-genai is installed, else
transformers: transformers' greedy answers, 1.9-3.0x faster (bench/chat_latency.py, 2-core
EPYC, with and without avx512). `onnx-int8` (int8 weights; the output layer's top 32 logits
computed again in fp32) decodes 3.5-4.3x transformers and scores within a point (23/40 on the
general-ability set; the knowledge check within one answer of onnx-fp32), but its greedy
wording parts from transformers' where the model's top two words are near-tied: asked "What
is the capital of France?" it begins in French, where transformers' own margin is 0.08
nats. `onnx` (int4) decodes 6-8x and scored 19-22/40. Both stay opt-in; see
docs/benchmarks.md.
"""

from __future__ import annotations

import importlib.util

ENGINES = ("auto", "transformers", "onnx", "onnx-int8", "onnx-fp32", "openai")


def onnx_installed() -> bool:
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("onnxruntime_genai", "onnx_ir", "onnx")
    )


def resolve_engine(choice: str, device: str) -> str:
    """The engine a setting means on this device (auto: see above)."""
    if choice not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {choice!r}")
    if choice == "auto":
        return "onnx-fp32" if device == "cpu" and onnx_installed() else "transformers"
    return choice
