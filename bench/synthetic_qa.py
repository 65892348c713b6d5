"""Synthetic QA for 50 chunks through the studio's own dataset job, per engine.

Uploads bench/knowledge_data in small chunks (so there are at least 50), then starts the
background build of a `text` dataset with 50 synthetic QA pairs (a question and an answer
the base model writes per chunk, in batches) and waits for the job. Each engine runs in a
fresh process on a fresh data dir. Target on a 2-core CPU: <= 3 minutes with the default
engine.

    .venv/bin/python bench/synthetic_qa.py --cache-dir /work/cache/models
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.settings import Settings  # noqa: E402

DATA = Path(__file__).with_name("knowledge_data")
CHUNKS = 50


def measure(engine: str, model: str, cache_dir: Path) -> dict:
    """One engine's figures, in this (fresh) process."""
    from core.datasets.jobs import FINAL
    from core.datasets.versions import BuildSpec
    from core.documents.chunking import ChunkSpec
    from core.documents.service import IncomingFile
    from core.services import build_services

    data_dir = Path(tempfile.mkdtemp(prefix="refinery-synthetic-"))
    services = build_services(Settings(data_dir=data_dir, model=model, cache_dir=cache_dir,
                                       engine=engine))
    files = [IncomingFile(p.name, p) for p in sorted(DATA.glob("*.md"))]
    small = ChunkSpec(size=16, overlap=0)  # the smallest chunks: enough of them from six files
    chunks = sum(r.chunks for r in services.documents.ingest(files, spec=small))
    engine_name = services.models.engine_name()
    if (builds := services.models.fast_builds()) is not None:
        builds.wait(None)  # the converted copy is built once and cached, not timed here
    started = time.perf_counter()
    job = services.dataset_jobs.start(BuildSpec(name="synthetic", kind="text",
                                                synthetic_qa=CHUNKS, validation_fraction=0.0))
    while (job := services.dataset_jobs.get(job.id)).status not in FINAL:
        time.sleep(0.5)
    seconds = time.perf_counter() - started
    if job.status != "completed":
        raise SystemExit(f"build {job.status}: {job.error}")
    dataset = services.datasets.get(job.dataset_id)
    written = [r["text"] for r in dataset.train if r["meta"]["label"] == "synthetic_qa"]
    services.close()
    return dict(engine=engine_name, chunks=chunks, seconds=seconds, pairs=len(written),
                example=written[0] if written else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    Settings.add_arguments(parser, only=("model", "cache_dir"))
    parser.add_argument("--engines", default="auto,transformers",
                        help="comma-separated engines to time (default: auto,transformers)")
    parser.add_argument("--only", help=argparse.SUPPRESS)  # child process: one engine, JSON
    args = parser.parse_args()
    cache_dir = Settings.from_args(args).models_dir
    if args.only:
        print(json.dumps(measure(args.only, args.model, cache_dir)))
        return
    from chat_latency import cpu_flags, load_average

    print(f"model {args.model}; {CHUNKS} chunks -> QA pairs; CPU flags: {cpu_flags()}; "
          f"load average {load_average()}")
    print(f"{'engine':<22} {'chunks':>7} {'pairs written':>14} {'wall time':>10}")
    for engine in args.engines.split(","):
        done = subprocess.run(
            [sys.executable, __file__, "--only", engine, "--model", args.model,
             "--cache-dir", str(cache_dir)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"{engine}: failed: {done.stderr.strip().splitlines()[-1:]}")
            continue
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{engine + ' (' + figures['engine'] + ')':<22} {figures['chunks']:>7}"
              f" {figures['pairs']:>14} {figures['seconds']:>8.0f} s")
        print(f"  e.g. {figures['example'][:160]!r}")


if __name__ == "__main__":
    main()
