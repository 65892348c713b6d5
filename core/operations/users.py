"""Manage login users: `python -m core.operations.users add NAME [--file users.json]`.

The password is read with getpass on a terminal, or as the first line of stdin otherwise
(`echo "$PW" | python -m core.operations.users add alice --file users.json`). Only its
argon2 hash is stored. Without --file (or REFINERY_USERS_FILE) the hash is printed, ready for
REFINERY_USERS.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

import yaml
from argon2 import PasswordHasher

from core.errors import InvalidInput, RefineryError
from core.operations.auth import check_name, read_users_file
from core.settings import Settings

MIN_PASSWORD_CHARS = 8


def read_password(stdin=None) -> str:
    stdin = stdin or sys.stdin
    if stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Repeat it: ") != first:
            raise InvalidInput("the two passwords differ")
        return first
    return stdin.readline().rstrip("\r\n")


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidInput(f"the password needs at least {MIN_PASSWORD_CHARS} characters")
    return PasswordHasher().hash(password)


def write_users_file(path: Path, users: dict[str, str]) -> None:
    """Atomically, readable by its owner only (hashes are still worth protecting)."""
    text = json.dumps(users, indent=2) if path.suffix == ".json" else yaml.safe_dump(users)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.partial")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text + ("\n" if not text.endswith("\n") else ""))
    os.replace(staging, path)


def add_user(path: Path | None, name: str, password: str) -> str:
    """Add or replace a user; returns the hash."""
    digest = hash_password(password)
    if path is not None:
        users = read_users_file(path) if path.exists() else {}
        users[check_name(name)] = digest
        write_users_file(path, users)
    return digest


def remove_user(path: Path, name: str) -> None:
    users = read_users_file(path)
    if users.pop(name, None) is None:
        raise InvalidInput(f"{path} has no user {name!r}")
    write_users_file(path, users)


def main(argv: list[str] | None = None, stdin=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.operations.users", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for command in ("add", "remove", "list"):
        sub = commands.add_parser(command)
        if command != "list":
            sub.add_argument("name")
        Settings.add_arguments(sub, only=("users_file",), rename={"users_file": "--file"})
    args = parser.parse_args(argv)
    path = Path(args.file).expanduser() if args.file else None
    try:
        if args.command == "add":
            digest = add_user(path, check_name(args.name), read_password(stdin))
            print(f"added {args.name} to {path}" if path else json.dumps({args.name: digest}))
        elif path is None:
            raise InvalidInput("name the users file with --file or REFINERY_USERS_FILE")
        elif args.command == "remove":
            remove_user(path, args.name)
            print(f"removed {args.name} from {path}")
        else:
            print("\n".join(sorted(read_users_file(path))))
    except RefineryError as error:
        print(f"users: {error.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
