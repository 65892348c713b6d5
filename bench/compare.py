"""Side by side on one copy of the base weights, against two separately loaded models.

Memory: each configuration in its own process (resident set size after answering).
Latency: all timed configurations in one process, their passes interleaved, so the load of
other work on the machine hits each alike. The configurations:
  one     one model, base answers only (the memory reference: "one model")
  pair    the Compare tab's path: one copy of the base weights, both answers of a prompt in
          one batch, the adapter's LoRA deltas added to its row only (core/serving/adapter_rows.py)
  two     two models loaded separately (base, and base + the adapter merged into a copy);
          per prompt the base answer on the first, then the adapter answer on the second
Targets: pair memory <= 1.15x one; total latency no worse than two (the two answers one
after the other). Run with `make bench` or `.venv/bin/python bench/compare.py`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.settings import Settings  # noqa: E402

TIMED = ("pair", "two")
PROMPTS = [
    "What is the capital of France?",
    "Explain what a LoRA adapter is in two sentences.",
    "Write a haiku about the sea.",
    "List three uses of a database.",
    "Why is the sky blue?",
]


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MB, from /proc."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def make_adapter(model_dir: Path, target: Path) -> None:
    """A LoRA adapter (r=16, all linear layers) with small random weights: it changes answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                        init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.mul_(0.05)
    peft_model.save_pretrained(target)


def build(mode: str, model_dir: Path, adapter_dir: Path, max_new_tokens: int):
    """Load what `mode` needs; return a function generating every answer once."""
    from core.serving.engines.run import GenerationStream
    from core.serving.generation import GenerationOptions, fit_to_context
    from core.serving.models import ModelService, load_model
    from core.serving.modelspec import AnswerPair, AnswerStream, ModelResolver, ResolvedModel
    from core.store import MIGRATIONS
    from core.store.arena import ArenaStore
    from core.store.database import Database

    options = GenerationOptions(max_new_tokens=max_new_tokens, temperature=0.0)
    questions = [[{"role": "user", "content": p}] for p in PROMPTS]
    if mode == "two":
        from peft import PeftModel

        first = load_model(str(model_dir), cache_dir=model_dir.parent)
        second = load_model(str(model_dir), cache_dir=model_dir.parent)
        merged = PeftModel.from_pretrained(second.model, adapter_dir).merge_and_unload().eval()
        second = type(second)(**{**second.__dict__, "model": merged})

        def answer_all() -> list[str]:
            texts = []
            for messages in questions:
                for loaded in (first, second):
                    prompt = fit_to_context(loaded.tokenizer, messages, 512)
                    texts.append("".join(GenerationStream(loaded, prompt, options)))
            return texts

        return answer_all
    service = ModelService(str(model_dir), cache_dir=model_dir.parent)
    db = Database(":memory:")
    db.migrate(MIGRATIONS)
    resolver = ModelResolver(service, ArenaStore(db))
    base = ResolvedModel("base", service.name, None, None)
    tuned = ResolvedModel("tuned", service.name, adapter_dir, "tuned")

    def answer_all() -> list[str]:
        texts = []
        for messages in questions:
            if mode == "pair":
                pair = AnswerPair(resolver, (base, tuned), messages, options)
                list(pair)
                texts += [result.text for result in pair.results]
            else:
                texts.append("".join(AnswerStream(resolver, base, messages, options)))
        return texts

    return answer_all


def child(role: str, model_dir: Path, adapter_dir: Path, max_new_tokens: int, repeats: int):
    """'memory:MODE': load MODE, answer once, report RSS. 'latency': every mode in one process,
    passes interleaved, so the machine's changing load hits each mode alike."""
    if role.startswith("memory:"):
        answer_all = build(role.split(":")[1], model_dir, adapter_dir, max_new_tokens)
        answers = answer_all()
        current, peak = rss_mb()
        return {"rss_mb": current, "peak_rss_mb": peak, "answers": answers}
    runs = {mode: build(mode, model_dir, adapter_dir, max_new_tokens) for mode in TIMED}
    seconds: dict[str, list[float]] = {mode: [] for mode in TIMED}
    answers = {mode: run() for mode, run in runs.items()}  # warm-up pass
    for _ in range(repeats):
        for mode, run in runs.items():
            started = time.perf_counter()
            answers[mode] = run()
            seconds[mode].append(time.perf_counter() - started)
    return {"seconds": {m: statistics.median(v) for m, v in seconds.items()}, "answers": answers}


def spawn(role: str, model_dir: Path, adapter_dir: Path, max_new_tokens: int, repeats: int):
    command = [sys.executable, __file__, "--child", role, "--model-dir", str(model_dir),
               "--adapter-dir", str(adapter_dir), "--max-new-tokens", str(max_new_tokens),
               "--repeats", str(repeats)]
    output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(output.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    Settings.add_arguments(parser, only=("model", "cache_dir"))
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child")
    parser.add_argument("--model-dir")
    parser.add_argument("--adapter-dir")
    args = parser.parse_args()
    if args.child:
        result = child(args.child, Path(args.model_dir), Path(args.adapter_dir),
                       args.max_new_tokens, args.repeats)
        print(json.dumps(result))
        return
    from core.serving.models import resolve_model_source

    settings = Settings.from_args(args)
    model_dir = Path(resolve_model_source(settings.model, settings.models_dir))
    with tempfile.TemporaryDirectory() as scratch:
        adapter_dir = Path(scratch) / "adapter"
        make_adapter(model_dir, adapter_dir)
        memory = {m: spawn(f"memory:{m}", model_dir, adapter_dir, args.max_new_tokens, 0)
                  for m in ("one", *TIMED)}
        timing = spawn("latency", model_dir, adapter_dir, args.max_new_tokens, args.repeats)
    one = memory["one"]["rss_mb"]
    print(f"model: {model_dir.name}, {len(PROMPTS)} prompts x 2 sides, greedy, "
          f"max {args.max_new_tokens} new tokens, LoRA r=16 on all linear layers")
    print("resident memory (one process per configuration, after answering):")
    for mode, result in memory.items():
        print(f"  {mode:6s}  {result['rss_mb']:6.0f} MB  ({result['rss_mb'] / one:.3f}x one model;"
              f" peak {result['peak_rss_mb']:.0f} MB)")
    print(f"latency (median of {args.repeats} interleaved passes of all {2 * len(PROMPTS)} "
          "answers, one process):")
    two = timing["seconds"]["two"]
    for mode in TIMED:
        same = sum(a == b for a, b in zip(timing["answers"][mode], timing["answers"]["two"],
                                          strict=True))
        seconds = timing["seconds"][mode]
        print(f"  {mode:6s}  {seconds:6.1f} s  ({seconds / two:.2f}x two models; "
              f"{same}/{2 * len(PROMPTS)} answers identical to two models)")
    print("targets: memory <= 1.15x one model; latency <= 1.0x two models one after the other")


if __name__ == "__main__":
    main()
