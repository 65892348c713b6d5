"""Headless training: `python -m core.training train --dataset ID --config file.yaml`.

Runs the same jobs as the Train tab and the API (same queue, run folders and
registry) against a data dir that no running studio holds; the studio's own
process serves the API for a data dir it holds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from core.settings import Settings, process_variable
from core.training.spec import PRESETS

FINAL = ("completed", "stopped", "failed")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m core.training", description=__doc__)
    Settings.add_arguments(parser, groups=("data", "model"))
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a LoRA adapter and register it")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="a dataset id from the Datasets tab or API")
    source.add_argument("--train-file", type=Path, help="JSONL rows (sft: messages; text: text)")
    train.add_argument("--validation-file", type=Path)
    train.add_argument("--kind", choices=("sft", "text", "preference"), default="sft")
    train.add_argument("--config", type=Path, help="YAML or JSON file of training options")
    train.add_argument("--preset", choices=tuple(PRESETS))
    train.add_argument("--name", default="")
    train.add_argument("--detach", action="store_true", help="queue it and return at once")
    commands.add_parser("list", help="list training jobs")
    for name in ("stop", "resume", "show"):
        command = commands.add_parser(name, help=f"{name} a job")
        command.add_argument("job_id")
    return parser.parse_args(argv)


def load_config(path: Path | None) -> dict:
    if path is None:
        return {}
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise SystemExit(f"{path}: expected a mapping of training options")
    return data


def read_rows(path: Path | None) -> list[dict] | None:
    if path is None:
        return None
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def follow(runner, job_id: str) -> int:
    """A tqdm bar over the job's optimizer steps until it finishes; Ctrl+C stops the job."""
    from tqdm import tqdm

    bar = tqdm(total=None, unit="step", desc=job_id)
    try:
        while (job := runner.get(job_id)).status not in FINAL:
            runner.poll()
            if job.total_steps and bar.total != job.total_steps:
                bar.total = job.total_steps
            bar.n = job.step
            bar.set_postfix({k: f"{job.metrics[k]:.4g}" for k in ("loss", "val_loss", "lr")
                             if job.metrics.get(k) is not None}, refresh=False)
            bar.refresh()
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nstopping: the worker saves a checkpoint first ...", file=sys.stderr)
        runner.stop(job_id)
        while runner.get(job_id).status not in FINAL:
            runner.poll()
            time.sleep(0.5)
    bar.close()
    job = runner.get(job_id)
    print(json.dumps({"id": job.id, "status": job.status, "model_id": job.model_id,
                      "error": job.error, "metrics": job.metrics}, indent=1, default=str))
    return 0 if job.status in ("completed", "stopped") else 1


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    from core.errors import RefineryError
    from core.services import build_services

    try:
        services = build_services(Settings.from_args(args))
    except Exception as error:  # DuckDB refuses a file another process holds
        print(f"cannot open {args.data_dir}: {error}\n(is the studio running on it? use its "
              "REST API: POST /api/v1/training/jobs)", file=sys.stderr)
        return 2
    runner = services.training
    try:
        if args.command == "train":
            spec = runner.make_spec(load_config(args.config), dataset_id=args.dataset,
                                    preset=args.preset)
            job = runner.submit(spec, train=read_rows(args.train_file),
                                validation=read_rows(args.validation_file),
                                kind=None if args.dataset else args.kind, name=args.name,
                                user=process_variable("USER", "cli"))
            print(f"job {job.id}: {job.status} (run folder {job.run_dir})", file=sys.stderr)
            return 0 if args.detach else follow(runner, job.id)
        if args.command == "list":
            for job in runner.list():
                print(f"{job.id}  {job.status:<9} {job.step}/{job.total_steps or '?'}  "
                      f"{job.name}  {job.model_id or ''}")
        elif args.command == "show":
            job = runner.get(args.job_id)
            print(json.dumps({**job.__dict__, "log": runner.log_tail(job.id)}, indent=1,
                             default=str))
        elif args.command == "stop":
            print(runner.stop(args.job_id).status)
        elif args.command == "resume":
            return follow(runner, runner.resume(args.job_id).id)
        return 0
    except RefineryError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    finally:
        services.close()


if __name__ == "__main__":
    sys.exit(main())
