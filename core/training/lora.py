"""The LoRA trainer the worker runs for SFT and plain-text jobs (preference builds on it).

Loads the base model, attaches LoRA, steps through the run folder's rows with StepLoop and
saves the adapter; the worker process (core/training/worker.py) picks a trainer per kind.
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

from core.serving.models import check_safetensors
from core.settings import process_variable
from core.training.cpu_speed import speed_up_cpu_training
from core.training.data import IGNORE, collate, encode_rows, step_plan
from core.training.distributed import Ranks, sum_across, sum_gradients
from core.training.events import RunFolder, read_jsonl
from core.training.loop import StepLoop
from core.training.spec import TrainingSpec

DEBUG_NAN_ENV = "REFINERY_DEBUG_NAN_AT_STEP"  # tests inject a non-finite loss at this step
# tests hold the run after this step until it is stopped or killed: a fixed point to act at
DEBUG_HOLD_ENV = "REFINERY_DEBUG_HOLD_AT_STEP"
TRAINED_IDS_FILE = "trained_example_ids.json"


def load_base(spec: TrainingSpec, model_path: str, device: str, *, trust_remote_code: bool = False):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    config = AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    seq2seq = bool(getattr(config, "is_encoder_decoder", False))
    auto = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
    options: dict = {
        "dtype": torch.float32, "use_safetensors": True, "trust_remote_code": trust_remote_code
    }
    if device == "cuda" and torch.cuda.is_bf16_supported():
        options["dtype"] = torch.bfloat16
    if spec.quantize_4bit:
        from transformers import BitsAndBytesConfig

        options["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=options["dtype"],
        )
    model = auto.from_pretrained(model_path, **options)
    if spec.quantize_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)
    else:
        model.to(device)
    return model, seq2seq


def attach_lora(model, spec: TrainingSpec, seq2seq: bool):
    from peft import LoraConfig, PeftModel, TaskType, get_peft_model

    if spec.init_adapter:
        check_safetensors(Path(spec.init_adapter), adapter=True)
        return PeftModel.from_pretrained(model, spec.init_adapter, is_trainable=True)
    targets = spec.target_modules
    config = LoraConfig(
        r=spec.lora_rank,
        lora_alpha=spec.lora_alpha,
        lora_dropout=spec.lora_dropout,
        target_modules=targets if isinstance(targets, str) else list(targets),
        task_type=TaskType.SEQ_2_SEQ_LM if seq2seq else TaskType.CAUSAL_LM,
    )
    return get_peft_model(model, config)


def selective_head(causal) -> bool:
    """Whether logits may be computed only where there are labels (no logit scaling/capping)."""
    config = causal.config
    return not (getattr(config, "final_logit_softcapping", None) or hasattr(config, "logit_scale"))


def batch_loss(model, batch: dict, *, seq2seq: bool):
    """(sum of token losses, number of label tokens) for one micro-batch."""
    import torch.nn.functional as F

    if seq2seq:
        logits = model(**batch).logits.float()
        labels = batch["labels"]
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="sum",
                               ignore_index=IGNORE), int((labels != IGNORE).sum())
    logits, targets, keep = label_logits(model.get_base_model(), batch)
    return F.cross_entropy(logits, targets, reduction="sum"), int(keep.sum())


def label_logits(causal, batch: dict):
    """(fp32 logits at every labelled position, their target ids, the label mask) of a
    causal LM's batch; each position predicts the next token."""
    labels = batch["labels"][:, 1:]
    keep = labels != IGNORE
    if selective_head(causal):
        # Run the output head only on positions that carry a label: with a large
        # vocabulary this skips most of the head's compute on prompts and padding.
        hidden = causal.base_model(input_ids=batch["input_ids"],
                                   attention_mask=batch["attention_mask"]).last_hidden_state
        logits = causal.get_output_embeddings()(hidden[:, :-1][keep]).float()
    else:
        logits = causal(input_ids=batch["input_ids"],
                        attention_mask=batch["attention_mask"]).logits[:, :-1][keep].float()
    return logits, labels[keep], keep


class Trainer(StepLoop):
    """LoRA on a causal or seq2seq language model: SFT and plain-text runs."""

    def __init__(self, run: RunFolder, events, stop: threading.Event, ranks: Ranks) -> None:
        import torch

        super().__init__(run, events, stop, ranks)
        self.device = f"cuda:{ranks.local_rank}" if torch.cuda.is_available() else "cpu"
        self.nan_at = int(process_variable(DEBUG_NAN_ENV, "0"))
        self.hold_at = int(process_variable(DEBUG_HOLD_ENV, "0"))

    def prepare(self) -> None:
        import torch
        from transformers import AutoTokenizer

        torch.manual_seed(self.spec.seed)
        self.events.emit("log", message=f"loading {self.spec.base_model} on {self.device}")
        model_path = self.job["model_path"]
        trust = bool(self.job.get("trust_remote_code", False))
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust)
        base, self.seq2seq = load_base(self.spec, model_path, self.device, trust_remote_code=trust)
        self.model = attach_lora(base, self.spec, self.seq2seq)
        if self.device == "cpu":
            bf16 = isinstance(self.autocast(), torch.autocast)
            speed_up_cpu_training(self.model, bf16_autocast=bf16)
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id or 0
        self.train_rows = read_jsonl(self.run.train_path)
        self.train = self.encode(self.train_rows)
        self.validation = self.encode(read_jsonl(self.run.validation_path))
        if not self.train:
            raise ValueError(f"no training example fits max_length {self.spec.max_length}: "
                             "every answer alone is longer; raise max_length")
        self.total_steps = self.spec.total_steps(len(self.train))
        self.plan = step_plan([e.length for e in self.train], batch_size=self.spec.batch_size,
                              grad_accumulation=self.spec.grad_accumulation,
                              epochs=self.spec.epochs, total_steps=self.total_steps,
                              seed=self.spec.seed)
        self.start_optimizer([p for p in self.model.parameters() if p.requires_grad])
        checkpoint = self.run.latest_checkpoint()
        if checkpoint is not None:
            self.load_checkpoint(checkpoint)

    def encode(self, rows: list[dict]) -> list:
        return encode_rows(self.tokenizer, rows, kind=self.job["kind"],
                           max_length=self.spec.max_length, seq2seq=self.seq2seq)

    def step_details(self) -> dict:
        """Extra figures a subclass reports with each step event (e.g. DPO reward margins)."""
        return {}

    def eval_details(self) -> dict:
        return {"val_loss": self.evaluate()}

    def save_weights(self, folder: Path) -> None:
        self.model.save_pretrained(folder)

    def load_weights(self, folder: Path) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(self.model, load_file(folder / "adapter_model.safetensors"))

    def save_adapter(self) -> None:
        ids = {row.get("id") for row in self.train_rows if row.get("id")}
        if self.spec.init_adapter:
            parent = Path(self.spec.init_adapter) / TRAINED_IDS_FILE
            if parent.is_file():
                ids |= set(json.loads(parent.read_text()))

        def write(folder: Path) -> None:
            self.model.save_pretrained(folder)
            self.tokenizer.save_pretrained(folder)
            (folder / TRAINED_IDS_FILE).write_text(json.dumps(sorted(ids)))

        self.replace_output(write)

    def to_device(self, batch: dict) -> dict:
        return {key: value.to(self.device) for key, value in batch.items()}

    def autocast(self):
        """bf16 matmuls with fp32 weights and fp32 loss, where the hardware does bf16 natively
        (recent GPUs; CPUs with AVX512-BF16 or AMX); plain fp32 elsewhere or when asked."""
        import contextlib

        import torch

        if self.spec.precision == "fp32":
            return contextlib.nullcontext()
        if self.device.startswith("cuda"):
            if torch.cuda.is_bf16_supported():
                return torch.autocast("cuda", dtype=torch.bfloat16)
        elif self.spec.precision == "bf16" or torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def evaluate(self) -> float | None:
        import torch

        if not self.validation:
            return None
        self.model.eval()
        total, count = 0.0, 0
        batch_size = self.spec.batch_size * 2
        ordered = sorted(self.validation, key=lambda e: e.length)
        with torch.no_grad(), self.autocast():
            for start in range(0, len(ordered), batch_size):
                batch, _ = collate(ordered[start:start + batch_size], pad_id=self.pad_id,
                                   seq2seq=self.seq2seq)
                loss, n = batch_loss(self.model, self.to_device(batch), seq2seq=self.seq2seq)
                total, count = total + float(loss), count + n
        self.model.train()
        return total / max(count, 1)

    def label_count(self, index: int) -> int:
        labels = self.train[index].labels
        return sum(label != IGNORE for label in (labels if self.seq2seq else labels[1:]))

    def train_step(self, micro_batches: list[list[int]]) -> tuple[float, int]:
        """One optimizer step; the loss is averaged over every label token of the step."""

        label_count = sum(self.label_count(i) for group in micro_batches for i in group)
        step_loss, tokens = 0.0, 0
        for group in micro_batches[self.ranks.rank::self.ranks.world]:
            batch, batch_tokens = collate([self.train[i] for i in group], pad_id=self.pad_id,
                                          seq2seq=self.seq2seq)
            with self.autocast():
                loss_sum, _ = batch_loss(self.model, self.to_device(batch), seq2seq=self.seq2seq)
            if self.nan_at and self.step + 1 == self.nan_at:
                loss_sum = loss_sum * float("nan")
            (loss_sum / max(label_count, 1)).backward()
            step_loss += float(loss_sum.detach())
            tokens += batch_tokens
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        sum_gradients(self.ranks, trainable)
        step_loss, tokens, stop = sum_across(
            self.ranks, [step_loss, tokens, float(self.stop.is_set())], self.device)
        if stop:
            self.stop.set()  # every rank leaves the loop after the same step
        self.update(trainable, step_loss)
        return step_loss / max(label_count, 1), int(tokens)

    def fit(self) -> dict:
        started = self.started = time.monotonic()
        start_step, tokens_here = self.step, 0
        self.events.emit("start", step=self.step, total_steps=self.total_steps,
                         train_examples=len(self.train), validation_examples=len(self.validation),
                         device=self.device, seq2seq=self.seq2seq)
        self.model.train()
        losses: list[float] = []
        while self.step < self.total_steps and not self.stop.is_set():
            loss, tokens = self.train_step(self.plan[self.step])
            self.step += 1
            tokens_here += tokens
            self.tokens_seen += tokens
            losses.append(loss)
            self.emit_step(loss, start_step=start_step, tokens_here=tokens_here,
                           **self.step_details())
            if self.step == self.hold_at:
                self.stop.wait()
            if not self.ranks.main:
                continue
            if self.due(self.eval_every):
                self.events.emit("eval", step=self.step, **self.eval_details())
            if self.step % self.spec.checkpoint_every == 0:
                self.save_checkpoint()
        elapsed = time.monotonic() - started
        if not self.ranks.main:
            return {}
        self.save_checkpoint()
        self.save_adapter()
        val_loss = self.evaluate()
        return {
            "steps": self.step, "total_steps": self.total_steps,
            "train_loss": losses[-1] if losses else None,
            "val_loss": val_loss,
            "perplexity": math.exp(min(val_loss, 50)) if val_loss is not None else None,
            "tokens": self.tokens_seen, "tokens_per_s": tokens_here / max(elapsed, 1e-9),
            "duration_s": self.elapsed_before + elapsed,
        }
