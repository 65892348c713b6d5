"""Every installed engine side by side on the default model: first token, decode speed,
greedy agreement with transformers, the general-ability score, and base + adapter side by side.

Each engine runs in a fresh process over the same 10 prompts (greedy, 64 new tokens, the
default repetition control). Targets on a 2-core CPU: the default CPU engine decodes >= 4x
transformers' tokens/s, first token <= 0.3 s, the same greedy answer as transformers on >= 8
of 10 prompts or the general-ability score (core/knowledge/general_ability.jsonl) within one
answer of transformers', and base + adapter side by side <= 1.1x one answer's latency.
Beside the pair, "2 base rows" is the base model's answer twice in one pass: no pair of two
models in one pass can beat it on the same engine and machine.
Run: `.venv/bin/python bench/chat_latency.py --cache-dir /work/cache/models`. The fast
engine's copies (the base converted, the adapter's built on it) are made on first use and
cached under the models folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.settings import Settings  # noqa: E402

PAIR_ROUNDS = 2  # the pair figures are medians over rounds of the first 4 prompts
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


def make_adapter(model_source: str, folder: Path) -> Path:
    """A random (non-zero) LoRA adapter shaped as the studio trains them (TrainingSpec's
    rank, alpha and layers), so side by side has real work on both rows."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from core.training.spec import TrainingSpec

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(model_source)
    shape = TrainingSpec(base_model=model_source)
    config = LoraConfig(r=shape.lora_rank, lora_alpha=shape.lora_alpha, init_lora_weights=False,
                        target_modules=shape.target_modules)
    model = get_peft_model(base, config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.mul_(0.01)  # small: a fine-tune nudges, it does not scramble
    model.save_pretrained(folder)
    return folder


def measure(engine: str, model: str, cache_dir: Path, adapter: Path, tokens: int) -> dict:
    """One engine's figures, in this (fresh) process."""
    from core.knowledge.general import load_general_set
    from core.serving.answers import answer_prompts
    from core.serving.engines.run import GenerationStream, generate_batch
    from core.serving.generation import GenerationOptions, fit_to_context
    from core.serving.models import ModelService
    from core.serving.modelspec import ResolvedModel

    service = ModelService(model, cache_dir=cache_dir, engine=engine)
    builds = service.fast_builds()
    if builds is not None:
        builds.wait(None)
        builds.wait(adapter)
    options = GenerationOptions(max_new_tokens=tokens, temperature=0)

    def prepared(loaded, prompt):
        return fit_to_context(loaded.tokenizer, [{"role": "user", "content": prompt}], 512)

    with service.use(None) as loaded:
        list(GenerationStream(loaded, prepared(loaded, "hi"), GenerationOptions(max_new_tokens=4)))
        answers = []
        for prompt in PROMPTS:
            stream = GenerationStream(loaded, prepared(loaded, prompt), options)
            list(stream)
            answers.append(stream.result)
    # the shipped general-ability set, greedy answers in batches: a fidelity figure that
    # does not hinge on exact text (near-ties split a quantised model's wording)
    items = load_general_set()
    base = ResolvedModel(spec=model, model_id=model, adapter_dir=None, adapter_version=None)
    general = sum(item.matches(row["answer"]) for item, row in zip(
        items, answer_prompts(service, base, [i.question for i in items], max_new_tokens=48),
        strict=True))
    with service.use_rows([None, adapter]) as loaded:  # the pair's first pass sets up too
        generate_batch(loaded, [prepared(loaded, "hi")] * 2, GenerationOptions(max_new_tokens=4))
    singles, tuned, pairs, twins = [], [], [], []
    for _ in range(PAIR_ROUNDS):
        for prompt in PROMPTS[:4]:
            with service.use(None) as loaded:
                singles.append(generate_batch(loaded, [prepared(loaded, prompt)], options)[0])
                twins.append(generate_batch(loaded, [prepared(loaded, prompt)] * 2, options))
            with service.use(adapter) as loaded:
                tuned.append(generate_batch(loaded, [prepared(loaded, prompt)], options)[0])
            with service.use_rows([None, adapter]) as loaded:
                pairs.append(generate_batch(loaded, [prepared(loaded, prompt)] * 2, options))
    return dict(
        engine=answers[0].engine,
        ttft=[r.ttft_ms / 1000 for r in answers],
        decode=[
            (r.completion_tokens - 1) / ((r.latency_ms - r.ttft_ms) / 1000)
            for r in answers if r.completion_tokens > 1 and r.latency_ms > r.ttft_ms
        ],
        texts=[r.text for r in answers],
        general=f"{general}/{len(items)}",
        pair_engines=sorted({r.engine for pair in pairs for r in pair}),
        # per prompt: the pair's slower row against one answer of the same length, the base
        # model's and the adapter's
        pair_ratio=pair_ratios(pairs, singles),
        pair_tuned_ratio=pair_ratios(pairs, tuned),
        # the floor under any pair on this machine: the base model's answer twice in one pass
        twin_ratio=pair_ratios(twins, singles),
    )


def pair_ratios(pairs: list, singles: list) -> list[float]:
    return [
        max(r.latency_ms for r in pair) / (single.latency_ms / single.completion_tokens
                                          * max(r.completion_tokens for r in pair))
        for single, pair in zip(singles, pairs, strict=True)
    ]


def cpu_flags() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags")[1].split("\n")[0].split()
    except (OSError, IndexError):
        return "unknown"
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile")
    return " ".join(flag for flag in wanted if flag in flags) or "none of avx2/avx512"


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def main() -> None:
    from core.serving.engines import onnx_installed

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    Settings.add_arguments(parser, only=("model", "cache_dir"))
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--adapter", help="a LoRA adapter folder (default: a random one)")
    parser.add_argument("--only", help=argparse.SUPPRESS)  # child process: one engine, JSON
    args = parser.parse_args()
    cache_dir = Settings.from_args(args).models_dir
    if args.only:
        figures = measure(args.only, args.model, cache_dir, Path(args.adapter),
                          args.max_new_tokens)
        print(json.dumps(figures))
        return
    from core.serving.models import resolve_model_source

    source = resolve_model_source(args.model, cache_dir)
    adapter = Path(args.adapter) if args.adapter else make_adapter(
        source, Path(tempfile.mkdtemp()) / "bench-adapter")
    engines = ["transformers",
               *(["onnx", "onnx-int8", "onnx-fp32"] if onnx_installed() else [])]
    results = {}
    for engine in engines:
        done = subprocess.run(
            [sys.executable, __file__, "--only", engine, "--model", args.model,
             "--cache-dir", str(cache_dir), "--adapter", str(adapter),
             "--max-new-tokens", str(args.max_new_tokens)],
            capture_output=True, text=True, check=False,
        )
        if done.returncode != 0:
            print(f"{engine}: failed: {done.stderr.strip().splitlines()[-1:]}")
            continue
        results[engine] = json.loads(done.stdout.strip().splitlines()[-1])
    reference = results.get("transformers")
    base_rate = statistics.median(reference["decode"]) if reference else None
    print(f"model {args.model}, {len(PROMPTS)} prompts, greedy, {args.max_new_tokens} new tokens;"
          f" CPU flags: {cpu_flags()}; load average {load_average()}")
    print(f"{'engine':<13} {'first token med/p90 s':>22} {'decode tok/s':>13}"
          f" {'x transformers':>15} {'greedy = transformers':>22} {'general set':>12}"
          f" {'pair/base, pair/adapter, 2 base rows/base (engine)':>52}")
    for engine, figures in results.items():
        rate = statistics.median(figures["decode"])
        same = sum(a == b for a, b in zip(figures["texts"], reference["texts"], strict=True)) if (
            reference) else 0
        speedup = f"{rate / base_rate:.1f}x" if base_rate else "-"
        ttft = figures["ttft"]
        pair_engines = ",".join(figures["pair_engines"])
        pair = ", ".join(f"{statistics.median(figures[key]):.2f}" for key in (
            "pair_ratio", "pair_tuned_ratio", "twin_ratio")) + f" ({pair_engines})"
        print(f"{engine:<13} {statistics.median(ttft):>10.3f} / {percentile(ttft, 0.9):<9.3f}"
              f" {rate:>13.1f} {speedup:>15} {same:>19}/10 {figures['general']:>12}"
              f" {pair:>52}")


if __name__ == "__main__":
    main()
