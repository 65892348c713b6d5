"""Retriever benchmark: fine-tuning the bundled all-MiniLM-L6-v2 with each loss, and the
re-embedding rate that a promotion costs.

    .venv/bin/python bench/retriever.py [--words 20 --epochs 2 --chunks 256]

The data are invented code words, each standing for one generated passage, asked about in
three phrasings for training and two other phrasings held out, so the base model ranks the
passages near chance. Each loss trains in-process with the worker's trainer (batch 8, lr
1e-4); the figures are MRR@10 and NDCG@10 on the held-out queries before and after, and
training examples per second. Re-embedding: chunk-sized texts embedded by a fine-tuned model.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from vocabulary import WORDS  # noqa: E402  (bench/ is the script folder)

TRAIN = ("what is {}?", "explain {} to me", "{} facts")
HELD_OUT = ("tell me about {}", "I want to learn about {}")
LOSSES = ("MultipleNegativesRankingLoss", "CosineSimilarityLoss", "TripletLoss")


class Events:
    def emit(self, event_type: str, /, **payload) -> None:
        if event_type == "log":
            print(f"  {payload['message']}", flush=True)


def codewords(count: int, rng: random.Random) -> dict[str, str]:
    syllables = ["zor", "blat", "quin", "dle", "vex", "mor", "plim", "bus", "draz", "fen", "nok",
                 "mur", "tle", "snor", "vid", "trel", "lop", "wob", "rin", "gax"]
    words: dict[str, str] = {}
    while len(words) < count:
        word = "".join(rng.sample(syllables, 2))
        words[word] = " ".join(rng.sample(WORDS, 12)).capitalize() + "."
    return words


def rows(words: dict[str, str], templates) -> list[dict]:
    names = list(words)
    out = []
    for i, name in enumerate(names):
        negatives = [words[names[(i + 1) % len(names)]], words[names[(i + 2) % len(names)]]]
        out += [{"query": t.format(name), "positive": words[name], "negatives": negatives}
                for t in templates]
    return out


def train(loss: str, folder: Path, words: dict[str, str], epochs: float):
    from core.datasets.rows import normalise_row
    from core.documents.retrieval import bundled_model_dir
    from core.training.distributed import Ranks
    from core.training.embedding import EmbeddingTrainer
    from core.training.events import RunFolder, write_jsonl
    from core.training.spec import TrainingSpec

    run = RunFolder(folder)
    folder.mkdir()
    spec = TrainingSpec(base_model="bundled", learning_rate=1e-4, epochs=epochs, batch_size=8,
                        grad_accumulation=1, warmup_ratio=0.1, embedding_loss=loss)
    run.write_json(run.spec_path, spec.to_dict())
    run.write_json(run.job_path, {"job_id": folder.name, "kind": "embedding",
                                  "model_path": str(bundled_model_dir())})
    for path, templates in ((run.train_path, TRAIN), (run.validation_path, HELD_OUT)):
        write_jsonl(path, [normalise_row("embedding", r, i)
                           for i, r in enumerate(rows(words, templates))])
    trainer = EmbeddingTrainer(run, Events(), threading.Event(), Ranks())
    trainer.prepare()
    started = time.perf_counter()
    metrics = trainer.fit()
    seconds = time.perf_counter() - started
    return metrics, seconds, len(trainer.train) * epochs, run.adapter_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=20)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--chunks", type=int, default=256)
    args = parser.parse_args()

    import torch

    from core.documents.retrieval import Embedder
    from core.training.worker import configure_threads

    configure_threads()  # as the worker does; REFINERY_TRAIN_THREADS overrides
    torch.manual_seed(0)
    words = codewords(args.words, random.Random(0))
    print(f"{args.words} code words: {args.words * len(TRAIN)} training rows, "
          f"{args.words * len(HELD_OUT)} held-out queries, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = None
        for loss in LOSSES:
            print(f"{loss}:", flush=True)
            metrics, seconds, examples, model_dir = train(loss, Path(tmp) / loss, words,
                                                          args.epochs)
            before, after = metrics["retrieval"]["before"], metrics["retrieval"]["after"]
            print(f"  MRR@10 {before['mrr@10']:.3f} -> {after['mrr@10']:.3f}, NDCG@10 "
                  f"{before['ndcg@10']:.3f} -> {after['ndcg@10']:.3f}; {metrics['steps']} steps "
                  f"in {seconds:.1f} s (with both evaluations), {examples / seconds:.1f} "
                  "examples/s", flush=True)
        rng = random.Random(1)
        texts = [" ".join(rng.choices(WORDS, k=150)) for _ in range(args.chunks)]
        embedder = Embedder(model_dir, device="cpu")
        embedder.embed(texts[:8])  # load the model before the clock starts
        started = time.perf_counter()
        embedder.embed(texts)
        rate = args.chunks / (time.perf_counter() - started)
        print(f"re-embedding: {rate:.1f} chunks/s of 150 words ({args.chunks} chunks); "
              f"a promotion of 10,000 chunks would take about {10_000 / rate / 60:.1f} min")


if __name__ == "__main__":
    main()
