"""Optional login: a table of users with argon2 password hashes, for the UI and the REST API.

Login is on when at least one user is configured (a users file and/or REFINERY_USERS). The UI
uses Gradio's own login page (`auth=` on mount_gradio_app); the API takes HTTP Basic
credentials checked against the same table (api/login.py reads them from the request).
Without users the studio binds to loopback only.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError

from core.errors import Forbidden, InvalidInput

ANONYMOUS = "anonymous"


def read_users_file(path: Path) -> dict[str, str]:
    """name -> hash from a JSON or YAML mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InvalidInput(f"cannot read the users file {path}: {error.strerror}") from error
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        raise InvalidInput(f"the users file {path} is not valid JSON/YAML: {error}") from error
    return _mapping(data or {}, str(path))


def parse_users_env(value: str) -> dict[str, str]:
    """REFINERY_USERS: a JSON object of name -> hash (argon2 hashes contain ',' and '$')."""
    try:
        data = json.loads(value)
    except ValueError as error:
        message = f"REFINERY_USERS must be a JSON object of name -> hash: {error}"
        raise InvalidInput(message) from None
    return _mapping(data, "REFINERY_USERS")


def _mapping(data: object, source: str) -> dict[str, str]:
    if not isinstance(data, dict):
        raise InvalidInput(f"{source}: expected a mapping of user name -> password hash")
    users = {}
    for name, digest in data.items():
        check_name(str(name))
        try:
            extract_parameters(str(digest))
        except InvalidHashError as error:
            raise InvalidInput(
                f"{source}: the hash of {name!r} is not an argon2 hash; "
                f"create it with `python -m core.operations.users add {name}`"
            ) from error
        users[str(name)] = str(digest)
    return users


def check_name(name: str) -> str:
    if not name or len(name) > 64 or not name.isprintable() or ":" in name or name != name.strip():
        raise InvalidInput(
            f"user name {name!r}: use 1-64 printable characters, no ':' or outer spaces"
        )
    return name


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Authenticator:
    """Checks names and passwords; remembers successes so argon2's cost is paid once."""

    users: dict[str, str] = field(default_factory=dict)
    _hasher: PasswordHasher = field(default_factory=PasswordHasher, repr=False)
    _key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    _verified: dict[str, bytes] = field(default_factory=dict, repr=False)
    _dummy: str | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def enabled(self) -> bool:
        return bool(self.users)

    def _dummy_hash(self) -> str:
        """A hash with the users' argon2 parameters, checked for unknown names: refusing
        an unknown name then costs what refusing a known one does (no user enumeration)."""
        with self._lock:
            if self._dummy is None:
                params = extract_parameters(next(iter(self.users.values())))
                self._dummy = PasswordHasher.from_parameters(params).hash(secrets.token_hex(16))
            return self._dummy

    def verify(self, name: str, password: str) -> bool:
        """Gradio's auth callable as well: (username, password) -> bool."""
        if not isinstance(password, str) or not self.users:
            return False
        digest = self.users.get(name)
        if digest is None:
            try:
                self._hasher.verify(self._dummy_hash(), password)
            except (VerificationError, InvalidHashError):
                pass
            return False
        token = hmac.new(self._key, f"{name}\0{password}".encode(), hashlib.sha256).digest()
        with self._lock:
            if hmac.compare_digest(self._verified.get(name, b""), token):
                return True
        try:
            self._hasher.verify(digest, password)
        except (VerificationError, InvalidHashError):
            return False
        with self._lock:
            self._verified[name] = token
        return True

    async def verify_async(self, name: str, password: str) -> bool:
        """For Gradio's login route: argon2's cost is paid off the event loop."""
        return await asyncio.to_thread(self.verify, name, password)


def acting_user(authenticated: str | None, claimed: str | None) -> str:
    """Who an action is recorded for: the logged-in user when login is on, else the claim.

    With login on, a request may not name someone else (no impersonation).
    """
    claimed = (claimed or "").strip() or ANONYMOUS
    if authenticated is None:
        return claimed
    if claimed not in (ANONYMOUS, authenticated):
        raise Forbidden(f"you are logged in as {authenticated!r} and cannot act as {claimed!r}")
    return authenticated


def build_authenticator(users_file: Path | None, users_env: str | None) -> Authenticator:
    users = read_users_file(users_file) if users_file else {}
    if users_env and users_env.strip():
        users |= parse_users_env(users_env)
    return Authenticator(users)


def bind_notice(host: str, *, auth_enabled: bool, allow_unauthenticated: bool) -> str:
    """The start-up line about who can reach the studio; refuses an open bind without the flag."""
    if auth_enabled:
        return f"Login is on: the UI and /api/v1 ask for a user name and password ({host})."
    if is_loopback(host):
        return (
            f"Login is off: listening on {host} only, so only this machine can connect "
            "(add users with `python -m core.operations.users add NAME` and --users-file "
            "to share it)."
        )
    if not allow_unauthenticated:
        raise InvalidInput(
            f"refusing to listen on {host} without login: anyone who can reach it could use "
            "the studio. Add users (--users-file, see "
            "`python -m core.operations.users add NAME`) or pass "
            "--allow-unauthenticated to accept the risk."
        )
    return (
        f"WARNING: login is off and Refinery listens on {host}: anyone who can reach this "
        "address can read the data and run the model (--allow-unauthenticated)."
    )


def session_user(username: str | None, typed: str | None) -> str:
    """Who a UI action is recorded for: the logged-in name when login is on, else the typed one."""
    return username or (typed or "").strip() or ANONYMOUS
