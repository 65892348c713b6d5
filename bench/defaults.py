"""What the served generation defaults answer: the benchmark prompts with the model's defaults
(core/serving/defaults.py), answer lengths and finish reasons, and how often "What is the
capital of France?" gets Paris at the defaults' temperature and at the old API/UI ones.

Run: .venv/bin/python bench/defaults.py --cache-dir /work/cache/models
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.chat_latency import PROMPTS  # noqa: E402
from core.serving.defaults import model_folder, resolve_defaults  # noqa: E402
from core.serving.engines.run import GenerationStream  # noqa: E402
from core.serving.generation import fit_to_context  # noqa: E402
from core.serving.models import load_model  # noqa: E402
from core.settings import Settings  # noqa: E402

CAPITAL = "What is the capital of France?"


def answer(loaded, prompt: str, options, seed: int):
    import torch

    torch.manual_seed(seed)
    prepared = fit_to_context(loaded.tokenizer, [{"role": "user", "content": prompt}], 1024)
    stream = GenerationStream(loaded, prepared, options)
    list(stream)
    return stream.result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    Settings.add_arguments(parser, only=("model", "cache_dir"))
    parser.add_argument("--max-new-tokens", type=int, default=Settings().default_max_new_tokens)
    parser.add_argument("--seeds", type=int, default=5, help="draws per temperature for Paris")
    parser.add_argument("--prompts", type=int, default=len(PROMPTS), help="how many prompts")
    args = parser.parse_args()
    cache = Settings.from_args(args).models_dir
    loaded = load_model(args.model, cache_dir=cache)
    defaults = resolve_defaults(model_folder(args.model, cache), max_new_tokens=args.max_new_tokens)
    print(f"defaults: temperature {defaults.temperature}, top_p {defaults.top_p}, "
          f"max_new_tokens {defaults.max_new_tokens} (from {defaults.source})")  # fmt: skip
    lengths = []
    for prompt in PROMPTS[: args.prompts]:
        result = answer(loaded, prompt, defaults.options(), seed=0)
        lengths.append(result.completion_tokens)
        shown = result.text.replace("\n", " ")
        print(f"\n## {prompt}\n[{result.completion_tokens} tokens, {result.finish_reason}, "
              f"{result.tokens_per_s:.1f} tokens/s] {shown}")  # fmt: skip
    print(f"\nanswer tokens: median {statistics.median(lengths):.0f}, max {max(lengths)}; "
          f"{sum(n >= args.max_new_tokens for n in lengths)}/{len(lengths)} hit the limit")
    print(f"\n{CAPITAL!r}, {args.seeds} draws of 48 tokens each:")
    for temperature in (defaults.temperature, 0.3, 0.7):
        options = defaults.options(max_new_tokens=48, temperature=temperature)
        texts = [answer(loaded, CAPITAL, options, seed).text for seed in range(args.seeds)]
        paris = sum("paris" in text.lower() for text in texts)
        print(f"  temperature {temperature}: Paris in {paris}/{args.seeds}; first: "
              f"{texts[0][:100]!r}")  # fmt: skip


if __name__ == "__main__":
    main()
