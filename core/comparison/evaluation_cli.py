"""Evaluate one model headless: `python -m core.comparison.evaluation_cli --model ID --dataset ID`.

Kept apart from core/comparison/evaluation.py, which the composition root (core/services.py)
builds on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from core.comparison.evaluation import EvalRequest, read_eval_file
from core.errors import RefineryError
from core.services import build_services
from core.settings import Settings

BASE = {"model": "--base-model"}  # --model names the evaluated model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.comparison.evaluation_cli")
    parser.add_argument("--model", required=True, help="base, base+fewshot or an adapter id")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="a dataset id (its validation split is used)")
    source.add_argument("--file", type=Path, help="a .jsonl/.json/.csv of prompts + references")
    Settings.add_arguments(parser, groups=("data", "model"), rename=BASE)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--limit", type=int)
    args = parser.parse_args(argv)
    services = build_services(Settings.from_args(args, rename=BASE))
    try:
        request = EvalRequest(
            model=args.model,
            dataset_id=args.dataset,
            rows=read_eval_file(args.file) if args.file else None,
            source_name=args.file.name if args.file else "upload",
            max_new_tokens=args.max_new_tokens,
            limit=args.limit,
        )
        with tqdm(desc="evaluating", unit="item") as bar:

            def advance(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            run = services.evaluations.run(request, progress=advance)
    except RefineryError as error:
        print(f"evaluation: {error.message}")
        return 2
    finally:
        services.close()
    print(json.dumps({"id": run["id"], "status": run["status"], **run["metrics"]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
