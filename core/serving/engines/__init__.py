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
- `onnx` / `onnx-fp32` (core/serving/engines/onnx.py): onnxruntime-genai on CPU, the model
  converted once (int4 weights, or fp32 for answers identical to transformers); an adapter
  gets a merged, converted copy built in the background while transformers answers.
- `openai` (core/serving/engines/openai_remote.py): an OpenAI-compatible server (vLLM, llama.cpp,
  Ollama, TGI, another Refinery) answers; adapters are addressed by registry id.

`--engine auto` is `onnx-fp32` on a CPU when onnxruntime-genai is installed, else
transformers: it gives transformers' greedy answers (10/10 prompts, the same general-ability
score) faster. int4 decodes several times faster still but its greedy wording differs on 9
of 10 prompts and it scored 18/40 against 22/40 on the general-ability set, so it stays
opt-in (`--engine onnx`).
"""

from __future__ import annotations

import importlib.util

ENGINES = ("auto", "transformers", "onnx", "onnx-fp32", "openai")


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
