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
transformers: transformers' greedy answers (10/10 prompts, the same general-ability score)
1.9x faster (bench/chat_latency.py, 2-core EPYC). `onnx-int8` decodes 5.2x transformers and
scored 23/40 on the general-ability set against 22/40, but its greedy wording drifts after
about 14 tokens (asked "What is the capital of France?" in chat it began "L'Étoile: Paris,
la maquette de la France"); `onnx` (int4) decodes 6.3x and scored 18/40. Both stay opt-in.
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
