"""onnxruntime-genai on CPU: the model converted once, an adapter as a merged, converted copy.

Measured on the bundled SmolLM2-135M (2-core EPYC, AVX512+BF16+VNNI, 10 prompts x 64 greedy
tokens): int4 weights decode several times faster than transformers; fp32 weights give the
same greedy answers as transformers. Conversions live under <models>/onnx/<precision>/, one
folder per base model and per adapter weights (a retrained adapter gets a new one); they
are built one at a time in a background thread, and until a copy is ready its model
answers with the transformers engine.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.serving.adapter_files import adapter_fingerprint

if TYPE_CHECKING:  # annotations only: models and generation run engines, not the reverse
    from core.serving.generation import GenerationOptions
    from core.serving.models import LoadedModel

log = logging.getLogger(__name__)

# engine -> (builder precision, builder options); its copies live under onnx/<precision>/
PRECISIONS = {
    "onnx": ("int4", ()),
    # int8 weights need int8 activations on CPU: with fp32 ones (accuracy_level=1) the
    # bundled model decoded 0.9 tokens/s
    "onnx-int8": ("int8", ("accuracy_level=4",)),
    "onnx-fp32": ("fp32", ()),
}


class OnnxBuilds:
    """Converted copies of one base model and its adapters, built once each, in the background."""

    def __init__(self, models_dir: Path, engine: str, source: str, *, trust_remote_code=False):
        self.precision, self.builder_options = PRECISIONS[engine]
        self.root = models_dir / "onnx" / self.precision
        self.source = Path(source)
        self.trust_remote_code = trust_remote_code
        self._models: dict[str, object] = {}
        self._failed: dict[str, str] = {}
        self._pending: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()  # one conversion at a time: the CPU is shared

    def folder(self, adapter_dir: Path | None) -> Path:
        if adapter_dir is None:
            return self.root / self.source.name
        return self.root / f"{self.source.name}+{adapter_fingerprint(Path(adapter_dir))}"

    def model(self, adapter_dir: Path | None):
        """(og.Model, pad id, vocab size) of the converted copy; None while it is built
        (or cannot be)."""
        folder = self.folder(adapter_dir)
        key = str(folder)
        with self._lock:
            if key in self._models:
                return self._models[key]
            if key in self._failed or key in self._pending:
                return None
            if not (folder / "genai_config.json").is_file():
                self._pending.add(key)
                thread = threading.Thread(
                    target=self._build_quietly, args=(adapter_dir, folder), daemon=True
                )
                self._threads.append(thread)
                thread.start()
                return None
        return self._load(folder)

    def wait(self, adapter_dir: Path | None):
        """(og.Model, pad id, vocab size) of the converted copy, converted now if needed."""
        folder = self.folder(adapter_dir)
        if not (folder / "genai_config.json").is_file():
            self.build(adapter_dir, folder)
        return self._load(folder)

    def join(self) -> None:
        """Wait for the background conversions started so far."""
        for thread in list(self._threads):
            thread.join()

    def status(self) -> dict:
        with self._lock:
            return {"ready": len(self._models), "building": len(self._pending),
                    "failed": dict(self._failed)}

    def _load(self, folder: Path):
        import onnxruntime_genai as og

        with self._lock:
            if str(folder) not in self._models:
                config = json.loads((folder / "genai_config.json").read_text())
                pad = int(config["model"].get("pad_token_id") or 0)
                vocab = int(config["model"]["vocab_size"])
                self._models[str(folder)] = (og.Model(str(folder)), pad, vocab)
            return self._models[str(folder)]

    def _build_quietly(self, adapter_dir: Path | None, folder: Path) -> None:
        try:
            self.build(adapter_dir, folder)
        except Exception as error:  # the transformers engine keeps answering for this model
            log.warning("fast engine unavailable for %s: %s", folder.name, error)
            with self._lock:
                self._failed[str(folder)] = str(error)
        finally:
            with self._lock:
                self._pending.discard(str(folder))

    def build(self, adapter_dir: Path | None, folder: Path) -> None:
        from tqdm import tqdm

        with self._build_lock, tempfile.TemporaryDirectory() as scratch:
            if (folder / "genai_config.json").is_file():
                return
            stages = 3 if adapter_dir else 2
            with tqdm(total=stages, desc=f"Converting {folder.name} ({self.precision})") as bar:
                source = self.source
                if adapter_dir is not None:
                    source = Path(scratch) / "merged"
                    merge_adapter(self.source, Path(adapter_dir), source, self.trust_remote_code)
                    bar.update()
                staging = folder.parent / f".{folder.name}.partial"
                shutil.rmtree(staging, ignore_errors=True)
                staging.parent.mkdir(parents=True, exist_ok=True)
                done = subprocess.run(
                    [sys.executable, "-m", "onnxruntime_genai.models.builder",
                     "-i", str(source), "-o", str(staging), "-p", self.precision,
                     "-e", "cpu", "-c", str(Path(scratch) / "cache"),
                     *(["--extra_options", *self.builder_options] if self.builder_options else [])],
                    capture_output=True, text=True, check=False,
                )
                if done.returncode != 0:
                    shutil.rmtree(staging, ignore_errors=True)
                    raise RuntimeError(done.stderr.strip().splitlines()[-1:] or "builder failed")
                bar.update()
                shutil.rmtree(folder, ignore_errors=True)
                staging.rename(folder)  # atomic: a half-written copy is never loaded
                bar.update()


def merge_adapter(base: Path, adapter_dir: Path, target: Path, trust_remote_code: bool) -> None:
    """The base weights with the LoRA deltas added in, saved as a plain model folder."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(
        base, dtype=torch.float32, trust_remote_code=trust_remote_code
    )
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    merged.save_pretrained(target)
    AutoTokenizer.from_pretrained(base, trust_remote_code=trust_remote_code).save_pretrained(target)


@dataclass
class OnnxSteps:
    """Rows decoded in lockstep: one batched generator per distinct model (base, adapters),
    the generators stepped side by side on their own threads."""

    models: list  # og.Model per row
    pad_ids: list[int]
    vocab_sizes: list[int]
    rows: list[list[int]]
    options: GenerationOptions
    stop: Callable[[], bool]
    logprobs: list[list[float]] | None = None

    def __iter__(self) -> Iterator[list[int]]:
        groups: dict[int, list[int]] = {}
        for index, model in enumerate(self.models):
            groups.setdefault(id(model), []).append(index)
        generators = [self._generator(indices) for indices in groups.values()]
        tokens = [0] * len(self.rows)
        self.logprobs = [[] for _ in self.rows]
        with ThreadPoolExecutor(len(generators)) as pool:
            for _ in range(self.options.max_new_tokens):
                # is_done() stays false for a batch whose rows all reached max_length
                if self.stop() or all(g.is_done() for g, _ in generators):
                    break
                for indices, (values, chosen) in zip(
                    groups.values(), pool.map(self._step, generators), strict=True
                ):
                    for i, value, lp in zip(indices, values, chosen, strict=True):
                        tokens[i] = value
                        self.logprobs[i].append(lp)
                yield list(tokens)

    def _generator(self, indices: list[int]):
        import numpy as np
        import onnxruntime_genai as og

        model = self.models[indices[0]]
        pad = self.pad_ids[indices[0]]
        width = max(len(self.rows[i]) for i in indices)
        ids = np.array([[pad] * (width - len(self.rows[i])) + self.rows[i] for i in indices],
                       dtype=np.int32)
        params = og.GeneratorParams(model)
        options = self.options
        search = dict(
            max_length=width + options.max_new_tokens,
            batch_size=len(indices),
            do_sample=options.sampling,
            repetition_penalty=options.repetition_penalty,
        )
        if options.sampling:
            import torch

            # drawn from torch's generator, so a caller that seeds torch (synthetic data, tests)
            # samples the same text again on this engine too
            seed = int(torch.randint(0, 2**31 - 1, ()).item())
            # top_k=0 would select onnxruntime-genai's nucleus-only sampler, which ignores
            # top_p (measured on 0.18: tokens far outside the nucleus drawn at temperature
            # 0.2); top-k over the whole vocabulary keeps top-p and means "no top-k"
            search.update(temperature=options.temperature, top_p=options.top_p,
                          top_k=self.vocab_sizes[indices[0]], random_seed=seed)
        params.set_search_options(**search)
        generator = og.Generator(model, params)
        generator.append_tokens(ids)
        return generator, len(indices)

    @staticmethod
    def _step(entry) -> tuple[list[int], list[float]]:
        import numpy as np

        generator, size = entry
        if generator.is_done():
            return [0] * size, [0.0] * size
        # Read before choosing: after generate_next_token(), get_logits() runs the model on
        # the chosen token and returns the next step's logits. These are the raw logits
        # (before repetition penalty and temperature), as transformers' confidence uses.
        logits = generator.get_logits().reshape(size, -1).astype(np.float64)
        generator.generate_next_token()
        chosen = generator.get_next_tokens().tolist()
        top = logits.max(axis=-1, keepdims=True)
        norm = top[:, 0] + np.log(np.exp(logits - top).sum(axis=-1))
        return chosen, [float(logits[r, t] - norm[r]) for r, t in enumerate(chosen)]


class OnnxEngine:
    """One hold of the model: a converted model per row (the base, or an adapter's copy)."""

    def __init__(self, name: str, converted: list[tuple]) -> None:
        self.name = name
        self.models = [model for model, _, _ in converted]
        self.pad_ids = [pad for _, pad, _ in converted]
        self.vocab_sizes = [vocab for _, _, vocab in converted]

    def steps(self, loaded: LoadedModel, rows, options, stop) -> OnnxSteps:
        if len(self.models) == len(rows):
            return OnnxSteps(self.models, self.pad_ids, self.vocab_sizes, rows, options, stop)
        if len(self.models) != 1:
            raise ValueError(f"{len(rows)} rows for {len(self.models)} models")
        # One model held (ModelService.use): every row is answered by it.
        n = len(rows)
        return OnnxSteps(self.models * n, self.pad_ids * n, self.vocab_sizes * n, rows, options,
                         stop)

    def generate(self, loaded, prompts, options, stop_event):
        from core.serving.engines.rows import TokenRows

        return TokenRows(self, loaded, prompts, options, stop_event)
