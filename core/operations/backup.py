"""Backup and restore of a data dir: the store via DuckDB EXPORT/IMPORT DATABASE, plus its files.

    python -m core.operations.backup export DEST [--data-dir D] [--include-models]
    python -m core.operations.backup restore SRC --data-dir D [--force]

A backup folder holds `database/` (schema.sql, load.sql, one Parquet file per
table), `files/` (uploads, runs with their adapters, exports ...) and
`manifest.json`. Both commands take the data dir's instance lock, so neither
runs while an app serves that data dir (DuckDB lets one process open the file).
Restoring into another folder rewrites the absolute paths the store keeps
(run folders, adapter folders) from the old data dir to the new one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tqdm import tqdm

from core.errors import Conflict, InvalidInput, RefineryError
from core.operations.instance_lock import run_holding
from core.settings import Settings
from core.store import Database, open_database

FORMAT = 1
PROGRAM = "refinery backup"  # how its error messages begin
# Never copied: the store (exported instead), its write-ahead log and the lock.
STORE_FILES = ("refinery.duckdb", "refinery.duckdb.wal", "refinery.lock")
MODELS_DIR = "models"  # converted base models: re-created on first use, so left out by default
TEXT_TYPES = ("VARCHAR", "JSON")


@dataclass(frozen=True)
class Manifest:
    format: int
    created_at: str
    data_dir: str
    tables: dict[str, int]  # row counts, to check a restore against
    files: int
    include_models: bool

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        try:
            fields = json.loads((folder / "manifest.json").read_text())
            manifest = cls(**fields)
        except (OSError, ValueError, TypeError) as error:
            raise InvalidInput(f"{folder} is not a Refinery backup: {error}") from None
        if manifest.format != FORMAT:
            raise InvalidInput(f"backup format {manifest.format} is not supported (want {FORMAT})")
        return manifest


def table_counts(db: Database) -> dict[str, int]:
    names = [row[0] for row in db.fetch_all(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        " AND table_type = 'BASE TABLE' ORDER BY 1")]
    return {name: db.fetch_one(f'SELECT count(*) FROM "{name}"')[0] for name in names}


def data_files(data_dir: Path, *, include_models: bool) -> list[Path]:
    """Every file of the data dir a backup carries, relative to it."""
    skipped = {data_dir / name for name in STORE_FILES}
    if not include_models:
        skipped.add(data_dir / MODELS_DIR)
    found = []
    for root, dirs, files in os.walk(data_dir):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if here / d not in skipped)
        found += [(here / name).relative_to(data_dir) for name in sorted(files)
                  if here / name not in skipped]
    return found


def copy_files(source: Path, target: Path, files: list[Path], label: str) -> None:
    for relative in tqdm(files, desc=label, unit="file", disable=not files):
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / relative, destination)


def export_backup(db: Database, data_dir: Path, dest: Path, *,
                  include_models: bool = False) -> Manifest:
    """Write a backup of `data_dir` (whose store `db` is open) into the new folder `dest`."""
    dest = dest.resolve()
    if dest.exists() and any(dest.iterdir()):
        raise Conflict(f"{dest} is not empty; back up into a new folder")
    if dest.is_relative_to(data_dir):
        raise InvalidInput("the backup folder must be outside the data dir")
    dest.mkdir(parents=True, exist_ok=True)
    db.export_to(dest / "database")
    files = data_files(data_dir, include_models=include_models)
    copy_files(data_dir, dest / "files", files, "copying files")
    manifest = Manifest(format=FORMAT, created_at=datetime.now().isoformat(timespec="seconds"),
                        data_dir=str(data_dir), tables=table_counts(db), files=len(files),
                        include_models=include_models)
    (dest / "manifest.json").write_text(json.dumps(manifest.__dict__, indent=2))
    return manifest


def rewrite_paths(db: Database, old: str, new: str) -> None:
    """Point the absolute paths the store keeps under the old data dir at the new one."""
    if old == new:
        return
    columns = db.fetch_all(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'main' AND data_type IN (?, ?)", list(TEXT_TYPES))
    old_prefix, new_prefix = old.rstrip("/") + "/", new.rstrip("/") + "/"
    for table, column, kind in columns:
        value = f'"{column}"::VARCHAR'
        db.execute(
            f'UPDATE "{table}" SET "{column}" = replace({value}, ?, ?)::{kind}'
            f" WHERE contains({value}, ?)", [old_prefix, new_prefix, old_prefix])


def restore_backup(source: Path, data_dir: Path, *, force: bool = False) -> Manifest:
    """Re-create a data dir from a backup; the caller holds the data dir's instance lock."""
    source, data_dir = source.resolve(), data_dir.resolve()
    manifest = Manifest.read(source)
    present = [p for p in data_dir.iterdir() if p.name != "refinery.lock"] \
        if data_dir.exists() else []
    if present and not force:
        raise Conflict(f"{data_dir} is not empty; restore into a new folder or pass --force "
                       "(which replaces its store and files; the model cache is kept)")
    for path in present:
        if path.name == MODELS_DIR and not manifest.include_models:
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    data_dir.mkdir(parents=True, exist_ok=True)
    db_path = data_dir / STORE_FILES[0]
    Database.import_into(db_path, source / "database")
    db = open_database(db_path)  # applies migrations newer than the backup
    try:
        rewrite_paths(db, manifest.data_dir, str(data_dir))
        counts = table_counts(db)
    finally:
        db.close()
    missing = {t: n for t, n in manifest.tables.items() if counts.get(t) != n}
    if missing:
        raise RefineryError(f"restored row counts differ from the backup's: {missing}")
    files = data_files(source / "files", include_models=True)
    copy_files(source / "files", data_dir, files, "restoring files")
    return manifest


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m core.operations.backup",
                                     description="Back up or restore a Refinery data dir.")
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="write a backup into a new folder DEST")
    export.add_argument("dest", type=Path)
    export.add_argument("--include-models", action="store_true",
                        help="also copy the converted model cache (large; re-created on use)")
    restore = commands.add_parser("restore", help="re-create a data dir from a backup SRC")
    restore.add_argument("source", type=Path)
    restore.add_argument("--force", action="store_true",
                         help="replace the store and files of a non-empty data dir")
    for command in (export, restore):
        Settings.add_arguments(command, groups=("data",))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data_dir = Settings.from_args(args).data_dir
    if args.command == "export" and not (data_dir / STORE_FILES[0]).is_file():
        print(f"{PROGRAM}: {data_dir} holds no Refinery store to back up", file=sys.stderr)
        return 2  # checked before the lock, which would create the folder

    def export() -> None:
        db = open_database(data_dir / STORE_FILES[0])
        try:
            manifest = export_backup(db, data_dir, args.dest, include_models=args.include_models)
        finally:
            db.close()
        print(f"backed up {sum(manifest.tables.values())} rows in {len(manifest.tables)} "
              f"tables and {manifest.files} files to {args.dest.resolve()}")

    def restore() -> None:
        manifest = restore_backup(args.source, data_dir, force=args.force)
        print(f"restored the backup of {manifest.created_at} into {data_dir}")

    return run_holding(data_dir / STORE_FILES[2],
                       f"python -m core.operations.backup {args.command}",
                       export if args.command == "export" else restore, program=PROGRAM)


if __name__ == "__main__":
    sys.exit(main())
