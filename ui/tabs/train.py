"""Train tab: start LoRA jobs on a dataset version, with an estimate first, and follow them
live in the shared job panel (re-attaches on reload)."""

from __future__ import annotations

import gradio as gr

from core.errors import InvalidInput
from core.services import Services
from core.training.spec import DEFAULT, INCREMENTAL, PRESETS, TrainingSpec
from ui.choices import KINDS, adapter_choices, dataset_choices
from ui.errors import problem, shows_errors
from ui.identity import user_name
from ui.job_panel import JobPanel, estimate_for, estimate_text
from ui.live import Live

HYPERPARAMETERS = ("lora_rank", "lora_alpha", "lora_dropout", "learning_rate", "warmup_ratio",
                   "schedule", "epochs", "batch_size", "grad_accumulation", "max_length",
                   "weight_decay", "seed", "checkpoint_every", "max_steps", "precision",
                   "dpo_beta")
INTEGERS = ("lora_rank", "batch_size", "grad_accumulation", "max_length", "seed",
            "checkpoint_every")


def build_train_tab(services: Services, live: Live, user: gr.Textbox) -> None:
    runner = services.training
    defaults = TrainingSpec(base_model=services.models.name)
    with gr.Tab("Train", id="train"):
        with gr.Row():
            base_model = gr.Textbox(value=services.models.name, label="Base model", scale=2)
            dataset = gr.Dropdown(dataset_choices(services), label="Dataset version", scale=3)
        with gr.Row():
            preset = gr.Dropdown([(f"{k} — {v}", k) for k, v in PRESETS.items()],
                                 value=DEFAULT, label="Preset",
                                 info="teach documents / learn corrections: train on a dataset "
                                      "built with the recipe of the same name")
            parent = gr.Dropdown(adapter_choices(services), value=None,
                                 label="Adapter to continue (incremental update)")
        with gr.Accordion("Hyperparameters", open=False):
            with gr.Row():
                rank = gr.Number(defaults.lora_rank, label="LoRA rank", precision=0)
                alpha = gr.Number(defaults.lora_alpha, label="LoRA alpha")
                dropout = gr.Number(defaults.lora_dropout, label="LoRA dropout")
                lr = gr.Number(defaults.learning_rate, label="Learning rate")
                warmup = gr.Number(defaults.warmup_ratio, label="Warmup ratio")
                schedule = gr.Dropdown(["cosine", "linear"], value=defaults.schedule,
                                       label="Schedule")
                epochs = gr.Number(defaults.epochs, label="Epochs")
            with gr.Row():
                batch = gr.Number(defaults.batch_size, label="Batch size", precision=0)
                accumulation = gr.Number(defaults.grad_accumulation,
                                         label="Gradient accumulation", precision=0)
                max_length = gr.Number(defaults.max_length, label="Max length", precision=0)
                decay = gr.Number(defaults.weight_decay, label="Weight decay")
                seed = gr.Number(defaults.seed, label="Seed", precision=0)
                every = gr.Number(defaults.checkpoint_every, label="Checkpoint every (steps)",
                                  precision=0)
                max_steps = gr.Number(0, label="Max steps (0 = by epochs)", precision=0)
                precision = gr.Dropdown(["auto", "fp32", "bf16"], value=defaults.precision,
                                        label="Precision (auto: bf16 where native)")
                beta = gr.Number(defaults.dpo_beta, label="DPO beta (preference datasets)")
        start = gr.Button("Train", variant="primary")
        panel = JobPanel(services, live, kinds=KINDS,
                         hint="No job yet: pick a dataset version and press Train.")
        knobs = [rank, alpha, dropout, lr, warmup, schedule, epochs, batch, accumulation,
                 max_length, decay, seed, every, max_steps, precision, beta]

        def make_spec(base, dataset_id, preset_name, parent_id, values):
            if not dataset_id:
                raise InvalidInput("pick a dataset version first")
            options = dict(zip(HYPERPARAMETERS, values, strict=True))
            options["max_steps"] = int(options["max_steps"] or 0) or None
            for name in INTEGERS:
                options[name] = int(options[name] or 0)
            options["base_model"] = (base or "").strip() or services.models.name
            if preset_name == INCREMENTAL:
                options["init_adapter"] = parent_id
            return runner.make_spec(options, dataset_id=dataset_id, preset=preset_name)

        @shows_errors(problem)
        def estimated(base, dataset_id, preset_name, parent_id, *values):
            if not dataset_id:
                return ""
            return estimate_text(estimate_for(services, make_spec(
                base, dataset_id, preset_name, parent_id, values)))

        @shows_errors(panel.failed)
        def begin(request: gr.Request, name, base, dataset_id, preset_name, parent_id,
                  *values):
            spec = make_spec(base, dataset_id, preset_name, parent_id, values)
            found = estimate_for(services, spec)
            if not found.kept:
                raise InvalidInput(found.problem())
            dataset = services.datasets.get(dataset_id)
            record = runner.submit(spec, name=f"{preset_name} · {dataset.name} "
                                   f"v{dataset.version}", user=user_name(name, request))
            return panel.started(record)

        inputs = [base_model, dataset, preset, parent, *knobs]
        start.click(begin, [user, *inputs], panel.outputs)
        for box in (dataset, preset, parent, epochs, batch, accumulation, max_length, max_steps):
            box.change(estimated, inputs, panel.estimate, show_progress="hidden")
        live.on_change(lambda: (gr.update(choices=dataset_choices(services)),
                                gr.update(choices=adapter_choices(services))), None,
                       [dataset, parent])
