"""Train tab: start LoRA jobs on a dataset version and watch them live (re-attaches on reload)."""

from __future__ import annotations

import gradio as gr

from core.errors import RefineryError
from core.services import Services
from core.store.training import ACTIVE
from core.training.spec import PRESETS, TrainingSpec
from ui.charts import loss_figure

REFRESH_S = 2.0
HYPERPARAMETERS = ("lora_rank", "lora_alpha", "lora_dropout", "learning_rate", "warmup_ratio",
                   "schedule", "epochs", "batch_size", "grad_accumulation", "max_length",
                   "weight_decay", "seed", "checkpoint_every", "max_steps", "precision",
                   "dpo_beta")


def dataset_choices(services: Services) -> list[tuple[str, str]]:
    return [(f"{d.name} v{d.version} · {d.kind} · {d.train_count} train / "
             f"{d.validation_count} val", d.id)
            for d in services.datasets.list() if d.kind in ("sft", "text", "preference")]


def job_choices(services: Services) -> list[tuple[str, str]]:
    return [(f"{j.id} · {j.status} · {j.name}", j.id) for j in services.training.list()]


def adapter_choices(services: Services) -> list[tuple[str, str]]:
    return [(f"{m.name} ({m.id})", m.id) for m in services.registry.list()]


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def status_text(job) -> str:
    m = job.metrics
    filled = int(job.progress * 20)
    bar = "█" * filled + "░" * (20 - filled)
    lines = [
        f"**{job.name}** · `{job.id}` · **{job.status}**",
        f"`{bar}` {job.progress:.0%} · step {job.step}/{job.total_steps or '?'} · "
        f"ETA {duration(m.get('eta_s')) if job.status == 'running' else '–'}",
        " · ".join(f"{label} {m[key]:{fmt}}" for key, label, fmt in (
            ("loss", "loss", ".4f"), ("val_loss", "val loss", ".4f"), ("lr", "lr", ".2e"),
            ("tokens_per_s", "tokens/s", ".1f"), ("reward_margin", "reward margin", ".3f"),
            ("reward_accuracy", "reward accuracy", ".0%")) if m.get(key) is not None)
        or "waiting for the first step",
    ]
    if job.model_id:
        lines.append(f"Registered as **{job.model_id}** (see the Models tab).")
    if job.error:
        lines.append(f"⚠️ {job.error}")
    return "\n\n".join(lines)


def build_train_tab(services: Services) -> None:
    runner = services.training
    defaults = TrainingSpec(base_model=services.models.name)
    with gr.Tab("Train", id="train"):
        with gr.Row():
            base_model = gr.Textbox(value=services.models.name, label="Base model", scale=2)
            dataset = gr.Dropdown(dataset_choices(services), label="Dataset version", scale=3)
            refresh = gr.Button("↻ Refresh lists", scale=0)
        with gr.Row():
            preset = gr.Dropdown([(f"{k} — {v}", k) for k, v in PRESETS.items()],
                                 value="default", label="Preset",
                                 info="teach documents / learn corrections: train on a dataset "
                                      "built with the recipe of the same name")
            parent = gr.Dropdown(adapter_choices(services), label="Adapter to continue "
                                 "(incremental update)")
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
        with gr.Row():
            start = gr.Button("Train", variant="primary")
            stop = gr.Button("Stop (save)")
            resume = gr.Button("Resume")
            job = gr.Dropdown(job_choices(services), label="Job", scale=3)
        status = gr.Markdown("No job yet: pick a dataset version and press Train.")
        chart = gr.Plot(label="Loss")
        log = gr.Textbox(label="Log", lines=6, max_lines=12, interactive=False)
        timer = gr.Timer(REFRESH_S)
        knobs = [rank, alpha, dropout, lr, warmup, schedule, epochs, batch, accumulation,
                 max_length, decay, seed, every, max_steps, precision, beta]

        def show(job_id):
            if not job_id:  # re-attach: follow the running job, else the newest one
                jobs = sorted(runner.list(), key=lambda j: (j.status != "running",
                                                            j.status not in ACTIVE))
                job_id = jobs[0].id if jobs else None
            if not job_id:
                return gr.skip(), gr.skip(), gr.skip(), gr.skip()
            try:
                record = runner.get(job_id)
                history = runner.history(job_id)
                tail = "\n".join(runner.log_tail(job_id))
            except RefineryError as error:
                return gr.update(), f"⚠️ {error.message}", gr.skip(), gr.skip()
            return (gr.update(choices=job_choices(services), value=job_id), status_text(record),
                    loss_figure(history), tail)

        def begin(base, dataset_id, preset_name, parent_id, *values):
            options = dict(zip(HYPERPARAMETERS, values, strict=True))
            options["max_steps"] = int(options["max_steps"] or 0) or None
            for name in ("lora_rank", "batch_size", "grad_accumulation", "max_length", "seed",
                         "checkpoint_every"):
                options[name] = int(options[name])
            options["base_model"] = (base or "").strip() or services.models.name
            if preset_name == "incremental update":
                options["init_adapter"] = parent_id
            if not dataset_id:
                return gr.update(), "⚠️ pick a dataset version first", gr.skip(), gr.skip()
            try:
                spec = runner.make_spec(options, dataset_id=dataset_id, preset=preset_name)
                record = runner.submit(spec, name=f"{preset_name} · {dataset_id}")
            except RefineryError as error:
                return gr.update(), f"⚠️ {error.message}", gr.skip(), gr.skip()
            return show(record.id)

        def act(action, job_id):
            if not job_id:
                return gr.update(), "⚠️ pick a job first", gr.skip(), gr.skip()
            try:
                action(job_id)
            except RefineryError as error:
                return gr.update(), f"⚠️ {error.message}", gr.skip(), gr.skip()
            return show(job_id)

        outputs = [job, status, chart, log]
        start.click(begin, [base_model, dataset, preset, parent, *knobs], outputs)
        stop.click(lambda j: act(runner.stop, j), job, outputs)
        resume.click(lambda j: act(runner.resume, j), job, outputs)
        job.input(show, job, outputs)
        timer.tick(show, job, outputs, show_progress="hidden")
        refresh.click(lambda: (gr.update(choices=dataset_choices(services)),
                               gr.update(choices=adapter_choices(services))), None,
                      [dataset, parent])
