"""The project's LoRA trainer against a plain Hugging Face Trainer + peft script.

Same model (the default SmolLM2-135M-Instruct), same chat data, same
hyperparameters (the studio's defaults: LoRA r16/α32/dropout 0.1 on all linear layers,
lr 2e-4 cosine, batch 4 with 4 accumulation steps),
same number of optimizer steps. The Trainer runs twice: as written by default (fp32)
and with bf16=True (autocast), the precision the project trainer picks on CPUs with
native bf16. Prints the non-padding tokens/s of each, the ratios, and the validation
loss of each (token-weighted cross-entropy on the assistant tokens in fp32, computed
by one function for all). Target: >= 1.5x with a validation loss no worse. Run with `make bench`
or `.venv/bin/python bench/train_throughput.py [--steps N]`.

Each training run has a fresh process of its own, as a user's script would. Alike in both:
effective batch 16 (4 micro-batches of 4 per step), one epoch, AdamW (0.9, 0.999, eps 1e-8,
weight decay 0), cosine schedule with int(0.1 x steps) warmup steps,
gradient clipping at 1.0, LoRA dropout 0.1, the LoRA initialisation (same seed), the loss
(a token-weighted mean over the whole step in both, so how a step is cut into micro-batches
does not change its gradient), and the examples of each step: both take the same random
sample per step, the Trainer in random order through its "sequential" sampler, as a plain
sampler would batch it. So the validation losses differ only by what the trainers do, not
by which examples met which learning rate. The project trainer's own choices: each step's
examples cut into length-sorted micro-batches (core/training/data.py), the output head only
on label positions, LoRA layers as one autograd function (core/training/fused_lora.py), and
on CPUs with native bf16, bf16 autocast with fp32 attention (core/training/cpu_speed.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.serving.models import resolve_model_source  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.training.data import IGNORE, encode_rows, step_plan  # noqa: E402
from core.training.events import RunFolder, read_jsonl, write_jsonl  # noqa: E402
from core.training.spec import TrainingSpec  # noqa: E402

TOPICS = ["the water cycle", "a LoRA adapter", "photosynthesis", "compound interest",
          "the French revolution", "binary search", "a database index", "volcanoes",
          "the immune system", "supply and demand", "plate tectonics", "a hash table"]
BASELINE_RESULT = "baseline.json"
FILLER = ("It matters because it shows how small parts add up to a larger whole. People often "
          "find it easier to remember with a simple example from everyday life. ").split()


def make_rows(count: int, seed: int) -> list[dict]:
    """Chat rows of varied length, like curated feedback: short and long questions and answers."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        topic = rng.choice(TOPICS)
        question = f"Explain {topic} " + " ".join(rng.choices(FILLER, k=rng.randint(2, 60)))
        answer = f"{topic.capitalize()} is " + " ".join(rng.choices(FILLER, k=rng.randint(5, 90)))
        rows.append({"id": f"b{seed}-{index}", "messages": [
            {"role": "user", "content": question + "?"},
            {"role": "assistant", "content": answer + "."}]})
    return rows


def prepare_run(spec: TrainingSpec, model_path: str, train, validation, folder: Path) -> RunFolder:
    """A run folder both trainers read: the spec, the model and the rows."""
    run = RunFolder(folder)
    run.path.mkdir(parents=True)
    run.write_json(run.spec_path, spec.to_dict())
    run.write_json(run.job_path, {"job_id": "bench", "model_path": model_path, "kind": "sft"})
    write_jsonl(run.train_path, train)
    write_jsonl(run.validation_path, validation)
    return run


def in_fresh_process(args: list[str]) -> None:
    """Each run gets a fresh interpreter, as a user's script would: no trainer inherits another's
    warm allocator or caches."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, *args], cwd=ROOT, env=env, check=True,
                   stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def ours(run: RunFolder) -> dict:
    in_fresh_process(["-m", "core.training.worker", str(run.path)])
    steps = [e for e in read_jsonl(run.events_path) if e["type"] == "step"]
    return {"tokens_per_s": steps[-1]["tokens_per_s"], "adapter": str(run.adapter_dir)}


def baseline(run: RunFolder, *, bf16: bool = False) -> dict:
    flags = ["--bf16"] if bf16 else []
    in_fresh_process([str(Path(__file__).resolve()), "--baseline-run", str(run.path), *flags])
    return run.read_json(run.path / BASELINE_RESULT)


def train_baseline(run: RunFolder, *, bf16: bool) -> None:
    """What a user would write: Trainer + peft, padding collator, default settings (fp32), or
    with `bf16=True` (autocast, the precision the project trainer uses on such CPUs)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
    )

    spec = TrainingSpec.from_dict(run.read_json(run.spec_path))
    model_path = run.read_json(run.job_path)["model_path"]
    folder = run.path / "hf"
    train = read_jsonl(run.train_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    torch.manual_seed(spec.seed)  # the same LoRA initialisation as the project's worker
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(
        r=spec.lora_rank, lora_alpha=spec.lora_alpha, lora_dropout=spec.lora_dropout,
        target_modules="all-linear", task_type="CAUSAL_LM"))
    examples = encode_rows(tokenizer, train, kind="sft", max_length=spec.max_length,
                           seq2seq=False)
    plan = step_plan([e.length for e in examples], batch_size=spec.batch_size,
                     grad_accumulation=spec.grad_accumulation, epochs=spec.epochs,
                     total_steps=spec.max_steps, seed=spec.seed)
    order = plain_order(plan, spec.seed)
    dataset = [{"input_ids": examples[i].input_ids, "attention_mask": [1] * examples[i].length,
                "labels": examples[i].labels} for i in order]
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True)
    counted = {"tokens": 0}

    def collate(features):
        batch = collator(features)
        counted["tokens"] += int(batch["attention_mask"].sum())
        return batch

    args = TrainingArguments(
        output_dir=str(folder), per_device_train_batch_size=spec.batch_size,
        gradient_accumulation_steps=spec.grad_accumulation, learning_rate=spec.learning_rate,
        lr_scheduler_type=spec.schedule, warmup_steps=int(spec.warmup_ratio * spec.max_steps),
        max_steps=spec.max_steps, weight_decay=spec.weight_decay, seed=spec.seed,
        logging_steps=1, save_strategy="no", report_to=[], use_cpu=not torch.cuda.is_available(),
        remove_unused_columns=False, disable_tqdm=True, train_sampling_strategy="sequential",
        bf16=bf16,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collate)
    started = time.monotonic()
    trainer.train()
    elapsed = time.monotonic() - started
    model.save_pretrained(folder / "adapter")
    run.write_json(run.path / BASELINE_RESULT, {"tokens_per_s": counted["tokens"] / elapsed,
                                                "adapter": str(folder / "adapter")})


def plain_order(plan: list[list[list[int]]], seed: int) -> list[int]:
    """Each step's sample, in the random order a plain sampler would batch it: the same examples
    per step as the project trainer, without its length-sorted micro-batches."""
    order = []
    for number, step in enumerate(plan):
        sample = [i for batch in step for i in batch]
        random.Random(seed * 100_003 + number).shuffle(sample)
        order += sample
    return order


def validation_loss(model_path: str, adapter: str, validation) -> float:
    """Token-weighted cross-entropy on the assistant tokens: one yardstick for both."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, adapter).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for example in encode_rows(tokenizer, validation, kind="sft", max_length=512,
                                   seq2seq=False):
            ids = torch.tensor([example.input_ids])
            labels = torch.tensor([example.labels])[:, 1:]
            logits = model(input_ids=ids).logits[:, :-1]
            keep = labels != IGNORE
            total += float(torch.nn.functional.cross_entropy(
                logits[keep], labels[keep], reduction="sum"))
            count += int(keep.sum())
    return total / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    Settings.add_arguments(parser, only=("model", "cache_dir"))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--validation-rows", type=int, default=16)
    parser.add_argument("--baseline-run", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bf16", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternate the trainers, one seed per round; the speed-up is "
                             "reported best against best and as the median of each round's "
                             "ratio (a shared machine's load varies from minute to minute), and "
                             "validation losses are compared seed by seed")
    args = parser.parse_args()
    if args.baseline_run:  # the child process of baseline()
        train_baseline(RunFolder(args.baseline_run), bf16=args.bf16)
        return
    model_path = resolve_model_source(args.model, Settings.from_args(args).models_dir)
    base = TrainingSpec(base_model=model_path, max_steps=args.steps, eval_every=args.steps,
                        checkpoint_every=args.steps, warmup_ratio=0.1)
    step_rows = base.batch_size * base.grad_accumulation  # one epoch of `steps` steps
    train = make_rows(args.steps * step_rows, 1)
    validation = make_rows(args.validation_rows, 2)
    print(f"{args.steps} optimizer steps of batch {base.batch_size}x{base.grad_accumulation}, "
          f"{len(train)} train / {len(validation)} validation chat rows, {model_path}")
    trainers = {"hf-fp32": baseline, "hf-bf16": partial(baseline, bf16=True), "refinery": ours}
    if not bf16_native():
        del trainers["hf-bf16"]  # the project trainer runs fp32 here too
    speeds: dict[str, list[float]] = {name: [] for name in trainers}
    losses: dict[str, list[float]] = {name: [] for name in trainers}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            # One seed per round: LoRA initialisation, data order and dropout all vary, so the
            # validation losses say whether a difference is more than one seed's luck.
            spec = replace(base, seed=round_)
            for name, trainer in trainers.items():
                run = prepare_run(spec, model_path, train, validation,
                                  Path(tmp) / f"{name}{round_}")
                result = trainer(run)
                losses[name].append(validation_loss(model_path, result["adapter"], validation))
                speeds[name].append(result["tokens_per_s"])
                print(f"seed {round_} {name:>8}: {result['tokens_per_s']:7.1f} non-padding "
                      f"tokens/s, validation loss "
                      f"{losses[name][-1]:.4f}", flush=True)
    for name in trainers:
        if name != "refinery":
            report(name, speeds, losses)
    print(json.dumps({name: {"tokens_per_s": [round(v, 1) for v in speeds[name]],
                             "val_loss": [round(v, 4) for v in losses[name]]}
                      for name in speeds}))


def bf16_native() -> bool:
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def report(name: str, speeds: dict[str, list[float]], losses: dict[str, list[float]]) -> None:
    """Speed-up two ways: best against best, and the median of each round's ratio (the two
    trainers of a round ran back to back, so a slow minute hits both)."""
    ratios = [o / b for o, b in zip(speeds["refinery"], speeds[name], strict=True)]
    deltas = [o - b for o, b in zip(losses["refinery"], losses[name], strict=True)]
    spread = statistics.stdev(deltas) if len(deltas) > 1 else 0.0
    print(f"against {name}: speed-up {max(speeds['refinery']) / max(speeds[name]):.2f}x best "
          f"against best ({max(speeds['refinery']):.1f} / {max(speeds[name]):.1f} tokens/s), "
          f"median of paired rounds {statistics.median(ratios):.2f}x "
          f"({', '.join(f'{r:.2f}' for r in ratios)}; target >= 1.5x); "
          f"validation loss {statistics.mean(losses['refinery']):.4f} against "
          f"{statistics.mean(losses[name]):.4f}, paired difference "
          f"{statistics.mean(deltas):+.4f} (sd {spread:.4f} over {len(deltas)} seeds: "
          f"{', '.join(f'{d:+.4f}' for d in deltas)})")


if __name__ == "__main__":
    main()
