"""Engines: what turns prompt tokens into answer tokens, behind one generation path.

Every answer (chat, the Compare tab's pairs, evaluation, synthetic data, probes) is
`Engine.generate(loaded, prompts, options, stop_event)`: rows of prepared prompts in, an
iterable of (row, text piece) out, then one GenerationResult per row (timing, token
counts, optional confidence, finish reason). Local engines share TokenRows
(core/engines/rows.py), which decodes the tokens an engine yields step by step and applies
the repeated-n-gram stop; a remote engine (an OpenAI-compatible server) would implement
`generate` itself from `prompt.messages`.

- `transformers` (core/engines/transformers_engine.py): the reference; GPU; training,
  SHAP/LIME forward passes and adapters not yet converted use it.
- `onnx` / `onnx-fp32` (core/engines/onnx.py): onnxruntime-genai on CPU, the model
  converted once (int4 weights, or fp32 for answers identical to transformers); an adapter
  gets a merged, converted copy built in the background while transformers answers.

`--engine auto` picks `onnx-fp32` on a CPU when onnxruntime-genai is installed, else
transformers: its answers are the reference's, token for token, and it still decodes faster.
`onnx` (int4) is several times faster again, but its greedy answers drift from the reference
after a few words (bench/chat_latency.py), and a quantized merged adapter may lose part of what
it learned, so it is a choice, not the default.
"""

from __future__ import annotations

import importlib.util

ENGINES = ("auto", "transformers", "onnx", "onnx-fp32")


def onnx_installed() -> bool:
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("onnxruntime_genai", "onnx_ir", "onnx")
    )


def resolve_engine(choice: str, device: str) -> str:
    """The engine a setting means on this device: auto -> onnx-fp32 on CPU when installed."""
    if choice not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {choice!r}")
    if choice == "auto":
        return "onnx-fp32" if device == "cpu" and onnx_installed() else "transformers"
    return choice
