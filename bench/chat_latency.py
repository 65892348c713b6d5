"""Time to first token and tokens/s of the default model over 10 prompts (median and p90).

Target on a 2-core CPU machine: first token under 0.5 s, at least 15 tokens/s.
Run with `make bench` (or `.venv/bin/python bench/chat_latency.py --model PATH`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.generation import GenerationOptions, GenerationStream, fit_to_context  # noqa: E402
from core.models import load_model  # noqa: E402

PROMPTS = [
    "What is the capital of France?",
    "Explain what a LoRA adapter is in two sentences.",
    "Write a haiku about the sea.",
    "List three uses of a database.",
    "How do I boil an egg?",
    "What is 12 times 7?",
    "Give me a short tip for writing clear emails.",
    "Why is the sky blue?",
    "Name a famous painting and its painter.",
    "Summarise the water cycle.",
]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--cache-dir", default=str(Path("data/runtime/models").resolve()))
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    loaded = load_model(args.model, cache_dir=Path(args.cache_dir or tempfile.mkdtemp()))
    options = GenerationOptions(max_new_tokens=args.max_new_tokens, temperature=0)
    warm = fit_to_context(loaded.tokenizer, [{"role": "user", "content": "hi"}], 512)
    list(GenerationStream(loaded, warm, GenerationOptions(max_new_tokens=4)))  # warm-up
    ttfts, rates, decode_rates = [], [], []
    for prompt in PROMPTS:
        prepared = fit_to_context(loaded.tokenizer, [{"role": "user", "content": prompt}], 512)
        stream = GenerationStream(loaded, prepared, options)
        list(stream)
        result = stream.result
        ttfts.append(result.ttft_ms / 1000)
        rates.append(result.tokens_per_s)
        decode_seconds = (result.latency_ms - result.ttft_ms) / 1000
        if result.completion_tokens > 1 and decode_seconds > 0:
            decode_rates.append((result.completion_tokens - 1) / decode_seconds)
    print(
        f"model: {loaded.model_id} on {loaded.device}, {len(PROMPTS)} prompts, greedy, "
        f"max {args.max_new_tokens} new tokens"
    )
    print(
        f"time to first token: median {statistics.median(ttfts):.3f} s, "
        f"p90 {percentile(ttfts, 0.9):.3f} s   (target < 0.5 s)"
    )
    print(
        f"tokens/s (whole answer): median {statistics.median(rates):.1f}, "
        f"p90 {percentile(rates, 0.9):.1f}   (target >= 15)"
    )
    print(f"tokens/s (after first token): median {statistics.median(decode_rates):.1f}")


if __name__ == "__main__":
    main()
