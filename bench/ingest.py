"""Document benchmark: ingestion throughput and search latency with 100,000 chunks stored.

    .venv/bin/python bench/ingest.py [--documents 8 --pages 12 --chunks 100000 --queries 50]

Ingestion runs the whole path (parse in a child process, chunk, dedupe, embed, store) on
generated text PDFs. For search, the store is filled up to --chunks with vectors near real
embeddings (embedding 100,000 chunks on two CPU cores would take most of an hour); each timed
query then embeds the question, scans every stored vector and reads the hits from DuckDB.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from vocabulary import WORDS  # noqa: E402  (bench/ is the script folder)


def page_text(rng: random.Random, lines: int = 40) -> str:
    sentences = []
    for _ in range(lines):
        words = rng.choices(WORDS, k=rng.randint(8, 14))
        sentences.append(" ".join(words).capitalize() + f" {rng.randint(1, 999)}.")
    return "\n".join(sentences)


def bench_ingest(service, documents: int, pages: int, rng: random.Random) -> dict:
    from tqdm import tqdm

    from core.documents.service import IncomingFile
    from tests.sample_files import make_pdf

    files = [
        IncomingFile(f"doc{i}.pdf", io.BytesIO(make_pdf([page_text(rng) for _ in range(pages)])))
        for i in range(documents)
    ]
    service.embedder.embed(["warm up"])  # load the model outside the timing
    with tqdm(total=len(files), desc="ingest", unit="file") as bar:
        started = time.perf_counter()
        results = service.ingest(
            files, progress=lambda done, _: bar.update(round(done * len(files)) - bar.n)
        )
        elapsed = time.perf_counter() - started
    failed = [r for r in results if not r.ok]
    if failed:
        raise SystemExit(f"ingestion failed: {failed[0].reason}")
    chunks = sum(r.chunks for r in results)
    texts = [row["text"] for r in results for row in service.preview(r.document_id)]
    started = time.perf_counter()
    service.embedder.embed(texts)
    embed_s = time.perf_counter() - started
    return {
        "files": len(results),
        "pages": sum(r.pages for r in results),
        "chunks": chunks,
        "seconds": elapsed,
        "pages_per_s": sum(r.pages for r in results) / elapsed,
        "chunks_per_s": chunks / elapsed,
        "embed_chunks_per_s": len(texts) / embed_s,
    }


def fill_store(service, total: int, rng_seed: int) -> int:
    """Add synthetic chunks, in documents of 10,000, until the store holds `total`."""
    import numpy as np
    from tqdm import tqdm

    from core.store.documents import ChunkRecord, DocumentRecord

    store = service.store
    have = store.count_chunks()
    _, real = store.load_vectors()
    rng = np.random.default_rng(rng_seed)
    with tqdm(total=max(total - have, 0), desc="fill store", unit="chunk") as bar:
        while have < total:
            size = min(10_000, total - have)
            base = real[rng.integers(0, len(real), size)]
            vectors = base + rng.normal(0, 0.05, base.shape).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            document_id = uuid.uuid4().hex
            records = [
                ChunkRecord(
                    id=uuid.uuid4().hex, document_id=document_id, seq=i, source="synthetic",
                    page=None, char_start=0, char_end=0, token_count=0,
                    text=f"synthetic chunk {have + i}", content_hash=uuid.uuid4().hex,
                    duplicate_of=None,
                )
                for i in range(size)
            ]  # fmt: skip
            store.add(
                DocumentRecord(
                    id=document_id, name="synthetic", kind="text", stored_name="-",
                    size_bytes=0, sha256="-", pages=0, chunk_tokens=0, chunk_overlap=0,
                    created_at=datetime.now(),
                ),
                [],
                records,
                vectors.astype(np.float32),
            )  # fmt: skip
            have += size
            bar.update(size)
    return have


def bench_search(service, queries: int, rng: random.Random) -> dict:
    from tqdm import tqdm

    started = time.perf_counter()
    service.search("warm up the cache", k=5)
    first_s = time.perf_counter() - started
    timings = []
    for _ in tqdm(range(queries), desc="search", unit="query"):
        question = " ".join(rng.choices(WORDS, k=6)) + "?"
        started = time.perf_counter()
        hits = service.search(question, k=5)
        timings.append((time.perf_counter() - started) * 1000)
        assert len(hits) == 5
    timings.sort()
    return {
        "first_ms": first_s * 1000,
        "median_ms": statistics.median(timings),
        "p90_ms": timings[int(0.9 * (len(timings) - 1))],
        "max_ms": timings[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=8)
    parser.add_argument("--pages", type=int, default=12)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from core.documents.service import build_document_service
    from core.settings import Settings
    from core.store import open_database

    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        db = open_database(settings.db_path)
        service = build_document_service(db, settings)
        ingest = bench_ingest(service, args.documents, args.pages, rng)
        stored = fill_store(service, args.chunks, args.seed)
        search = bench_search(service, args.queries, rng)
        db.close()
    print(
        f"ingest: {ingest['files']} PDFs, {ingest['pages']} pages, {ingest['chunks']} chunks "
        f"in {ingest['seconds']:.1f} s -> {ingest['pages_per_s']:.1f} pages/s, "
        f"{ingest['chunks_per_s']:.1f} chunks/s end to end; "
        f"embedding alone {ingest['embed_chunks_per_s']:.1f} chunks/s"
    )
    print(
        f"search: {stored:,} chunks stored, k=5, {args.queries} queries -> "
        f"median {search['median_ms']:.1f} ms, p90 {search['p90_ms']:.1f} ms, "
        f"max {search['max_ms']:.1f} ms (first query with cache load {search['first_ms']:.0f} ms)"
    )


if __name__ == "__main__":
    main()
