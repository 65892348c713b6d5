"""The one check for paths that come from a request: they must stay inside an allowed folder.

Every request field that names a file or folder (an adapter folder, a base model folder,
init_adapter ...) goes through `inside` or `AllowedFolders`, so `../`, absolute paths,
symlinks out of the folder and NUL bytes all end in the same typed error.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from core.errors import InvalidInput, NotFound

# A hub id ("org/name" or "name") as the Hugging Face hub spells them; loaded from the local
# cache only (HF_HUB_OFFLINE). Anything else that names a model is a path and gets checked.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?")
MAX_PATH_CHARS = 1024


def _text(candidate: str | Path) -> str:
    text = str(candidate)
    if not text.strip():
        raise InvalidInput("the path is empty")
    if "\x00" in text:
        raise InvalidInput("the path contains a NUL byte")
    if len(text) > MAX_PATH_CHARS:
        raise InvalidInput(f"the path is longer than {MAX_PATH_CHARS} characters")
    if "\\" in text:
        raise InvalidInput("use '/' in paths, not '\\'")
    return text


def inside(root: Path, candidate: str | Path, *, must_exist: bool = True) -> Path:
    """`candidate` (relative to `root`, or absolute) resolved, symlinks followed.

    Raises InvalidInput when it leaves `root` and NotFound when it does not exist.
    """
    text = _text(candidate)
    try:
        base = Path(root).resolve()
        resolved = (base / text).resolve()
        exists = resolved.exists()
    except (OSError, RuntimeError, ValueError) as error:  # loops, names too long ...
        raise InvalidInput(f"{text!r} is not a usable path ({type(error).__name__})") from error
    if not resolved.is_relative_to(base):
        raise InvalidInput(f"{text!r} is outside the folders this studio may read")
    if must_exist and not exists:
        raise NotFound(f"{text!r} does not exist")
    return resolved


def received_upload(root: Path, candidate: str | Path) -> Path:
    """A file the web UI received in an upload: a regular file inside `root` (the upload
    area), reached without any symlink. Anything else (a server path, a URL, a symlink to a
    secret) is refused before a byte of it is read.
    """
    text = _text(candidate)
    refused = f"{text!r} was not uploaded through the page: only uploaded files are accepted"
    named = Path(os.path.abspath(text))  # '..' folded, symlinks kept
    base = next((b for b in (Path(os.path.abspath(root)), Path(root).resolve())
                 if named.is_relative_to(b)), None)
    if base is None:
        raise InvalidInput(refused)
    step = base
    for part in named.relative_to(base).parts:
        step = step / part
        if step.is_symlink():
            raise InvalidInput(f"{text!r} is a symlink: only uploaded files are accepted")
    found = inside(base, named)
    if not found.is_file():
        raise InvalidInput(f"{text!r} is not a file")
    return found


@dataclass(frozen=True)
class AllowedFolders:
    """The folders a request may name (the data dir, the model cache); protected files excluded."""

    roots: tuple[Path, ...]
    protected: tuple[Path, ...] = ()  # e.g. the DuckDB file: never served or loaded

    def __post_init__(self) -> None:
        if not self.roots:
            raise ValueError("AllowedFolders needs at least one root")
        object.__setattr__(self, "roots", tuple(Path(r).resolve() for r in self.roots))
        object.__setattr__(self, "protected", tuple(Path(p).resolve() for p in self.protected))

    def path(self, candidate: str | Path) -> Path:
        """The existing path inside one of the roots that `candidate` names."""
        errors: list[Exception] = []
        for root in self.roots:
            try:
                found = inside(root, candidate)
            except (InvalidInput, NotFound) as error:
                errors.append(error)
                continue
            if any(found == p or p.is_relative_to(found) for p in self.protected):
                raise InvalidInput(f"{str(candidate)!r} is protected studio data")
            return found
        raise next((e for e in errors if isinstance(e, NotFound)), errors[0])

    def folder(self, candidate: str | Path) -> Path:
        found = self.path(candidate)
        if not found.is_dir():
            raise InvalidInput(f"{str(candidate)!r} is not a folder")
        return found

    def model_source(self, name: str) -> str:
        """A base-model name from a request: a cached hub id as is, else a checked folder."""
        text = _text(name)
        named = [Path(text), *(root / text for root in self.roots)]
        if HUB_ID.fullmatch(text) and ".." not in text and not any(p.exists() for p in named):
            return text
        return str(self.folder(text))


def looks_like_path(spec: str) -> bool:
    """Whether a model spec names a folder rather than an id."""
    return any(mark in spec for mark in ("/", "\\", "\x00")) or spec.startswith((".", "~"))
