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
  CPU, the model converted once (int4, int8 or fp32 weights); an adapter's copy is the base
  copy's graph with its LoRA paths grafted on behind a per-row switch (base and adapter rows
  in one pass), ready seconds after first use; until then transformers answers.
- `openai` (core/serving/engines/openai_remote.py): an OpenAI-compatible server (vLLM, llama.cpp,
  Ollama, TGI, another Refinery) answers; adapters are addressed by registry id.

`--engine auto` is `onnx-int8` on a CPU when onnxruntime-genai is installed, else
transformers. `onnx-int8` (int8 weights on all cores; the output layer's top 32 logits
computed again in fp32, an adapter's LoRA path kept fp32) decoded 4.6-6.5x transformers and
scored as transformers does on the general-ability set (24/40) and as onnx-fp32 on the
knowledge check (a taught adapter 32/44 and 39/44 against 32 and 38); its greedy wording
parts from transformers' where the model's top two words are near-tied. `onnx-fp32` gives
transformers' greedy answers exactly, 2.9-3.5x; `onnx` (int4) decodes 6.9-9.4x and scored
19-22/40. bench/chat_latency.py, docs/benchmarks.md.
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
        return "onnx-int8" if device == "cpu" and onnx_installed() else "transformers"
    return choice
