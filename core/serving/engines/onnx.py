"""onnxruntime-genai on CPU: the model converted once; an adapter's copy is the base copy's
graph with the adapter's LoRA paths added behind a per-row switch.

Measured on the bundled SmolLM2-135M (bench/chat_latency.py, 2-core CPU): fp32 weights give
transformers' greedy answers exactly (the output layer rescored: see onnx_graph), near the
machine's memory bandwidth (4 bytes per weight per token); int8 weights decode faster and
score as transformers does, with other wording where the model's top two words are
near-tied; int4 is fastest and scores lower. With the switch, base and adapter rows (side
by side, A/B arms) decode in one pass over one copy of the base weights instead of two
models. Copies live under <models>/onnx/<recipe folder>/, one folder per base model and
per adapter weights (a retrained adapter gets a new one). The base model's conversion runs
in a background thread, an adapter's copy takes seconds (its weights are hard links to the
base copy's); until a copy is ready its model answers with the transformers engine. Each
build prunes the cache (see prune).
"""

from __future__ import annotations

import json
import logging
import os
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
from core.serving.cpu_threads import default_threads
from core.serving.engines.onnx_graph import (
    OUTPUT_LAYER,
    ROW_SWITCH,
    graft_lora,
    output_layer_on_last_positions,
    rescore_output_layer,
)

if TYPE_CHECKING:  # annotations only: models and generation run engines, not the reverse
    from core.serving.generation import GenerationOptions
    from core.serving.models import LoadedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """How the builder converts a model for one engine."""

    precision: str
    # copies live under onnx/<folder>/: a changed recipe or graph edit gets a new folder
    # ("-last": the output layer on the last positions only, see onnx_graph)
    folder: str
    options: tuple[str, ...] = ()
    exact_top: int = 0  # > 0: the output layer runs int8, its top logits again in fp32


RECIPES = {
    "onnx": Recipe("int4", "int4-last"),
    # int8 weights need int8 activations on CPU (with fp32 ones, accuracy_level=1, the bundled
    # model decoded 1.9 tokens/s). The output layer quantised moved the general-ability score
    # from 22/40 to 19/40; kept fp32 it scored transformers' 22/40, but reading it cost as
    # much as the rest: its top 32 logits in fp32 give the same answers 1.5x faster. A
    # scale per 128 weights instead of 32 decoded faster again and scored 24/40, not 23.
    "onnx-int8": Recipe("int8", "int8-b128-rescored-head-last",
                        ("accuracy_level=4", "block_size=128", "shared_embeddings=false",
                         f"nodes_to_exclude={OUTPUT_LAYER}"), exact_top=32),
    # the same rescored output layer keeps transformers' greedy answers, and each step reads
    # a sixth fewer bytes: about 1.1x faster, 12% less memory (docs/benchmarks.md)
    "onnx-fp32": Recipe("fp32", "fp32-rescored-head-last", exact_top=32),
}
KEPT_ADAPTER_COPIES = 8  # per recipe; each holds its LoRA weights (the rest are hard links)


@dataclass(frozen=True)
class Converted:
    model: object  # og.Model
    pad_id: int
    vocab_size: int
    switched: bool  # an adapter's copy: it takes ROW_SWITCH and can answer base rows too


class OnnxBuilds:
    """Converted copies of one base model and its adapters, built once each, in the background."""

    def __init__(self, models_dir: Path, engine: str, source: str, *, trust_remote_code=False):
        self.recipe = RECIPES[engine]
        self.root = models_dir / "onnx" / self.recipe.folder
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
        return self.root / f"{self.source.name}+lora-{adapter_fingerprint(Path(adapter_dir))}"

    def model(self, adapter_dir: Path | None) -> Converted | None:
        """The converted copy; None while it is built (or cannot be)."""
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

    def wait(self, adapter_dir: Path | None) -> Converted:
        """The converted copy, converted now if needed."""
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

    def _load(self, folder: Path) -> Converted:
        import onnxruntime_genai as og

        with self._lock:
            if str(folder) not in self._models:
                os.utime(folder)  # last used: what pruning keeps
                config = json.loads((folder / "genai_config.json").read_text())
                self._models[str(folder)] = Converted(
                    og.Model(_on_all_cores(og.Config(str(folder)))),
                    pad_id=int(config["model"].get("pad_token_id") or 0),
                    vocab_size=int(config["model"]["vocab_size"]),
                    switched=folder != self.folder(None))
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
        """Convert the base model if needed; an adapter's copy is the base copy's graph with
        the LoRA paths grafted on, its weights hard links to the base copy's."""
        with self._build_lock:
            base = self.folder(None)
            if not (base / "genai_config.json").is_file():
                _staged(base, self._convert)
            if adapter_dir is not None and not (folder / "genai_config.json").is_file():
                _staged(folder, lambda staging: _graft(base, Path(adapter_dir), staging))
        self.prune(keep=folder)

    def _convert(self, staging: Path) -> None:
        from tqdm import tqdm

        options = [*self.recipe.options, *(["hf_remote=true"] if self.trust_remote_code
                                           else [])]
        with tqdm(total=2, desc=f"Converting {self.source.name} ({self.recipe.folder})") as bar, \
                tempfile.TemporaryDirectory() as scratch:
            done = subprocess.run(
                [sys.executable, "-m", "onnxruntime_genai.models.builder",
                 "-i", str(self.source), "-o", str(staging), "-p", self.recipe.precision,
                 "-e", "cpu", "-c", str(Path(scratch) / "cache"),
                 *(["--extra_options", *options] if options else [])],
                capture_output=True, text=True, check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(done.stderr.strip().splitlines()[-1:] or "builder failed")
            bar.update()
            if self.recipe.exact_top and not rescore_output_layer(
                    staging / "model.onnx", self.recipe.exact_top):
                log.info("%s: no fp32 output layer to rescore; kept as converted",
                         self.source.name)
            if not output_layer_on_last_positions(staging / "model.onnx"):
                log.info("%s: the output layer runs on every position", self.source.name)
            bar.update()

    def prune(self, keep: Path) -> None:
        """Delete copies no recipe reads any more (a changed recipe has a new folder), and all
        but the KEPT_ADAPTER_COPIES most recently used adapter copies of this recipe, never
        `keep` or one this process has loaded; a pruned adapter is rebuilt when used."""
        folders = {recipe.folder for recipe in RECIPES.values()}
        stale = [d for d in self.root.parent.iterdir() if d.is_dir() and d.name not in folders]
        with self._lock:
            protected = {*self._models, str(keep)} - {str(self.folder(None))}
        copies = sorted((d for d in self.root.glob(f"{self.source.name}+lora-*")
                         if str(d) not in protected), key=lambda d: d.stat().st_mtime,
                        reverse=True)
        room = max(0, KEPT_ADAPTER_COPIES - len(protected))
        for folder in [*stale, *copies[room:]]:
            log.info("removing the converted copy %s", folder)
            shutil.rmtree(folder, ignore_errors=True)


def _staged(folder: Path, write: Callable[[Path], None]) -> None:
    """Write a copy beside its folder, then move it in whole: a half-written copy (a crash,
    a failed conversion) is never loaded."""
    staging = folder.parent / f".{folder.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        write(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


def _graft(base: Path, adapter_dir: Path, staging: Path) -> None:
    staging.mkdir()
    for file in base.iterdir():
        if file.name != "model.onnx":
            try:  # the weights on disk once, however many adapters
                os.link(file, staging / file.name)
            except OSError:
                shutil.copy2(file, staging / file.name)
    graft_lora(base, adapter_dir, staging / "model.onnx")


def _on_all_cores(config):
    """onnxruntime-genai's sessions run on one thread unless told: on 2 cores, 2 threads
    decoded the int8 copy 1.5x faster and the fp32 one 1.4x (docs/benchmarks.md)."""
    config.overlay(json.dumps({"model": {"decoder": {"session_options": {
        "intra_op_num_threads": default_threads()}}}}))
    return config


@dataclass
class OnnxSteps:
    """Rows decoded in lockstep: one batched generator per distinct copy, the generators
    stepped side by side on their own threads. Base rows ride in an adapter's pass, its
    LoRA switched off for them, so base and adapter side by side read the weights once."""

    copies: list[Converted]  # per row
    rows: list[list[int]]
    options: GenerationOptions
    stop: Callable[[], bool]
    logprobs: list[list[float]] | None = None

    def passes(self) -> list[tuple[Converted, list[int]]]:
        """(copy, its rows) per generator."""
        adapter = next((copy for copy in self.copies if copy.switched), None)
        groups: dict[int, tuple[Converted, list[int]]] = {}
        for index, copy in enumerate(self.copies):
            if adapter is not None and not copy.switched:
                copy = adapter
            groups.setdefault(id(copy), (copy, []))[1].append(index)
        return list(groups.values())

    def __iter__(self) -> Iterator[list[int]]:
        passes = self.passes()
        generators = [self._generator(copy, indices) for copy, indices in passes]
        tokens = [0] * len(self.rows)
        self.logprobs = [[] for _ in self.rows]
        with ThreadPoolExecutor(len(generators)) as pool:
            for _ in range(self.options.max_new_tokens):
                # is_done() stays false for a batch whose rows all reached max_length
                if self.stop() or all(g.generator.is_done() for g in generators):
                    break
                for (_, indices), (values, chosen) in zip(
                    passes, pool.map(_Pass.step, generators), strict=True
                ):
                    for i, value, lp in zip(indices, values, chosen, strict=True):
                        tokens[i] = value
                        self.logprobs[i].append(lp)
                yield list(tokens)

    def _generator(self, copy: Converted, indices: list[int]) -> _Pass:
        import numpy as np
        import onnxruntime_genai as og

        width = max(len(self.rows[i]) for i in indices)
        # padded on the right, as onnxruntime-genai pads its own batches: left-padded rows
        # answered otherwise than alone (0.18: 5 of 12 general-set answers alike, now 12)
        ids = np.array(
            [self.rows[i] + [copy.pad_id] * (width - len(self.rows[i])) for i in indices],
            dtype=np.int32,
        )
        params = og.GeneratorParams(copy.model)
        options = self.options
        # no repetition_penalty here: onnxruntime-genai's counts the prompt too (_Pass.step)
        search = dict(max_length=width + options.max_new_tokens, batch_size=len(indices),
                      do_sample=options.sampling)
        if options.sampling:
            import torch

            # drawn from torch's generator, so a caller that seeds torch (synthetic data, tests)
            # samples the same text again on this engine too
            seed = int(torch.randint(0, 2**31 - 1, ()).item())
            # top_k=0 would select onnxruntime-genai's nucleus-only sampler, which ignores
            # top_p (measured on 0.18: tokens far outside the nucleus drawn at temperature
            # 0.2); top-k over the whole vocabulary keeps top-p and means "no top-k"
            search.update(temperature=options.temperature, top_p=options.top_p,
                          top_k=copy.vocab_size, random_seed=seed)
        params.set_search_options(**search)
        generator = og.Generator(copy.model, params)
        switch = None
        if copy.switched:
            switch = np.array([float(self.copies[i].switched) for i in indices],
                              dtype=np.float32).reshape(-1, 1, 1)
            generator.set_model_input(ROW_SWITCH, switch)
        generator.append_tokens(ids)
        return _Pass(generator, switch, options.repetition_penalty, [set() for _ in indices])


@dataclass
class _Pass:
    """One batched generator and what its steps need."""

    generator: object  # og.Generator
    # onnxruntime-genai reads the ROW_SWITCH array at every step without copying it: it must
    # live as long as the generator, so it travels with it
    switch: object
    penalty: float
    answered: list[set[int]]  # per row, the tokens of its answer so far

    def step(self) -> tuple[list[int], list[float]]:
        import numpy as np

        size = len(self.answered)
        if self.generator.is_done():
            return [0] * size, [0.0] * size
        # Read before choosing: after generate_next_token(), get_logits() runs the model on
        # the chosen token and returns the next step's logits. These are the raw logits
        # (before repetition penalty and temperature), as transformers' confidence uses.
        raw = self.generator.get_logits()
        logits = raw.reshape(size, -1)
        if self.penalty != 1.0 and any(self.answered):
            self.generator.set_logits(penalised(logits, self.answered, self.penalty)
                                      .reshape(raw.shape))
        self.generator.generate_next_token()
        chosen = self.generator.get_next_tokens().tolist()
        for seen, token in zip(self.answered, chosen, strict=True):
            seen.add(token)
        # float32 is plenty for a log-probability and costs a tenth of float64 per row
        top = logits.max(axis=-1, keepdims=True)
        norm = top[:, 0] + np.log(np.exp(logits - top).sum(axis=-1))
        return chosen, [float(logits[r, t] - norm[r]) for r, t in enumerate(chosen)]


def penalised(logits, answered: list[set[int]], penalty: float):
    """The repetition penalty on each row's own answer so far (as transformers applies it:
    a positive logit divided by it, a negative one multiplied), never on the prompt's tokens:
    a grounded answer copies names and numbers from its sources."""
    import numpy as np

    out = logits.copy()
    for row, seen in enumerate(answered):
        ids = np.fromiter(seen, dtype=np.int64, count=len(seen))
        values = out[row, ids]
        out[row, ids] = np.where(values > 0, values / penalty, values * penalty)
    return out


class OnnxEngine:
    """One hold of the model: a converted copy per row (the base, or an adapter's copy)."""

    def __init__(self, name: str, copies: list[Converted]) -> None:
        self.name = name
        self.copies = copies

    def steps(self, loaded: LoadedModel, rows, options, stop) -> OnnxSteps:
        if len(self.copies) == len(rows):
            return OnnxSteps(self.copies, rows, options, stop)
        if len(self.copies) != 1:
            raise ValueError(f"{len(rows)} rows for {len(self.copies)} models")
        # One model held (ModelService.use): every row is answered by it.
        return OnnxSteps(self.copies * len(rows), rows, options, stop)

    def generate(self, loaded, prompts, options, stop_event):
        from core.serving.engines.rows import TokenRows

        return TokenRows(self, loaded, prompts, options, stop_event)
