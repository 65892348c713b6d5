"""The job panel shared by the Train, Tune and Retriever tabs: an estimate before start, then
the followed job's progress, ETA, loss chart and log in plain words, and errors with the fix.

Which jobs exist and where each stands come from the studio's one job list (core.jobs); the
training run adds its figures, loss curves and log."""

from __future__ import annotations

from datetime import datetime

import gradio as gr

from core.errors import RefineryError
from core.jobs import ACTIVE, RUNNING, TRAINING, Job
from core.services import Services
from core.training.estimate import Estimate, estimate
from core.training.spec import TrainingSpec
from ui.charts import loss_figure
from ui.errors import problem, shows_errors
from ui.live import Live
from ui.readable import named, short_id

POLL_S = 2.0
BOOKKEEPING = {"time", "seq", "step", "type", "total_steps"}
LOG_TYPES = ("log", "start", "eval", "checkpoint", "completed", "stopped", "failed")
METRICS = (("loss", "loss", ".4f"), ("val_loss", "val loss", ".4f"), ("lr", "lr", ".2e"),
           ("tokens_per_s", "tokens/s", ".0f"), ("reward_margin", "reward margin", ".3f"),
           ("reward_accuracy", "reward accuracy", ".0%"))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def estimate_for(services: Services, spec: TrainingSpec) -> Estimate:
    dataset = services.datasets.get(spec.dataset_id)
    tokenizer = services.models.get().tokenizer if dataset.kind in ("sft", "text") else None
    return estimate(spec, list(dataset.train), dataset.kind, tokenizer=tokenizer,
                    jobs=services.training.list())


def estimate_text(found: Estimate) -> str:
    eta = (f"about **{duration(found.eta_s)}** at {found.tokens_per_s:.0f} tokens/s "
           "(past runs here)" if found.eta_s is not None
           else "time unknown until a first run on this machine finishes")
    text = (f"Estimate: **{found.steps}** steps over {found.kept} of {found.rows} rows, "
            f"~{found.tokens:,} tokens, {eta}.")
    problem = found.problem()
    return text + (f"\n\n⚠️ {problem}" if problem else "")


def event_line(event: dict) -> str:
    """One log event as a sentence."""
    stamp = datetime.fromtimestamp(event["time"]).strftime("%H:%M:%S")
    kind = event["type"]
    if event.get("message"):
        text = event["message"]
    elif kind == "start":
        text = (f"started at step {event.get('step', 0)} of {event.get('total_steps')}: "
                f"{event.get('train_examples')} training and {event.get('validation_examples')}"
                f" validation examples on {event.get('device')}")
    elif kind == "eval":
        figures = ", ".join(f"{k.replace('_', ' ')} {v:.4g}" for k, v in event.items()
                            if k not in BOOKKEEPING and isinstance(v, float))
        text = f"evaluated at step {event.get('step')}: {figures or 'no validation rows'}"
    elif kind == "checkpoint":
        text = f"checkpoint saved at step {event.get('step')}"
    elif kind in ("completed", "stopped"):
        m = event.get("metrics") or {}
        val = m.get("val_loss")
        speed = f" at {m['tokens_per_s']:.0f} tokens/s" if m.get("tokens_per_s") else ""
        text = (f"{kind} after {m.get('steps', '?')} of {m.get('total_steps', '?')} steps in "
                f"{duration(m.get('duration_s'))}{speed}; validation loss "
                f"{'–' if val is None else f'{val:.4f}'}")
    else:
        text = kind + (f": {event['error']}" if event.get("error") else "")
    return f"{stamp}  {text}"


def log_text(services: Services, job) -> str:
    events = services.training.events(job.id, types=LOG_TYPES)
    lines = [event_line(event) for event in events[-30:]]
    if job.error:
        lines.append(f"error: {job.error}")
    return "\n".join(lines)


def status_text(job: Job, run) -> str:
    """`job` from the job list, `run` the training record with its step and figures."""
    m = run.metrics
    filled = int(job.progress * 20)
    active = f" · {job.message}" if job.status in ACTIVE and job.message else ""
    lines = [
        f"**{job.name}** · {job.status}{active} · started by {job.user_id} · "
        f"`{short_id(job.id)}`",
        f"`{'█' * filled}{'░' * (20 - filled)}` {job.progress:.0%} · step {run.step}/"
        f"{run.total_steps or '?'} · ETA "
        f"{duration(job.eta_s) if job.status == RUNNING else '–'}",
        " · ".join(f"{label} {m[key]:{fmt}}" for key, label, fmt in METRICS
                   if m.get(key) is not None) or "waiting for the first step",
    ]
    if m.get("stopped_early"):
        lines.append(f"Stopped early; kept the weights of step {m.get('best_step')}.")
    if job.result.get("model_id"):
        lines.append(f"Registered as **{job.result['model_id']}** (see Operate → Models).")
    if job.error:
        lines.append(f"⚠️ {job.error}")
    return "\n\n".join(lines)


class JobPanel:
    """Built inside a tab: estimate, Stop/Resume, job picker, status, chart, log. The tab's
    Start button calls `panel.started(record)` to follow the new job at once."""

    def __init__(self, services: Services, live: Live, *, kinds: tuple[str, ...],
                 hint: str) -> None:
        self.services, self.kinds = services, kinds
        self.estimate = gr.Markdown()
        with gr.Row():
            self.stop = gr.Button("Stop (save)")
            self.resume = gr.Button("Resume")
            self.job = gr.Dropdown(self.choices(), value=None, label="Job", scale=3)
        self.status = gr.Markdown(hint)
        self.chart = gr.Plot(label="Loss")
        self.log = gr.Textbox(label="Log", lines=6, max_lines=12, interactive=False)
        self.following = gr.State(None)  # the job shown; the timer never changes it
        self.shown = gr.State(None)  # (id, status, step) last drawn: skip redrawing the same
        self.timer = gr.Timer(POLL_S)
        self.outputs = [self.job, self.status, self.chart, self.log, self.following, self.shown]
        self.wire()
        live.on_change(lambda job_id: gr.update(choices=self.choices(), value=job_id),
                       self.following, self.job)  # a job started elsewhere joins the list

    def jobs(self) -> list[Job]:
        return [j for j in self.services.jobs.list(kinds=(TRAINING,))
                if j.detail.get("training_kind") in self.kinds]

    def choices(self) -> list[tuple[str, str]]:
        return [(f"{named(j.name, j.id)} · {j.status}", j.id) for j in self.jobs()]

    def newest(self) -> str | None:
        jobs = sorted(self.jobs(), key=lambda j: (j.status != RUNNING, j.status not in ACTIVE))
        return jobs[0].id if jobs else None

    @shows_errors(lambda m, panel, *_: panel.failed(m), with_inputs=True)
    def view(self, job_id: str | None, shown=None, *, force: bool = False):
        """Outputs for `job_id` (the running or newest job when None)."""
        job_id = job_id or self.newest()
        if not job_id:
            return (gr.skip(),) * 6
        job = self.services.jobs.get(job_id)
        record = self.services.training.get(job_id)
        key = [job.id, job.status, job.message, record.step, job.error]
        if key == shown and not force:
            return (gr.skip(),) * 6
        history = self.services.training.history(job_id)
        log = log_text(self.services, record)
        return (gr.update(choices=self.choices(), value=job_id), status_text(job, record),
                loss_figure(history), log, job_id, key)

    def started(self, record):
        return self.view(record.id, force=True)

    def failed(self, message: str):
        return gr.skip(), problem(message), gr.skip(), gr.skip(), gr.skip(), gr.skip()

    def wire(self) -> None:
        @shows_errors(self.failed)
        def act(action, job_id):
            if not job_id:
                raise RefineryError("pick a job first")
            action(job_id)
            return self.view(job_id, force=True)

        runner = self.services.training
        self.stop.click(lambda j: act(runner.stop, j), self.job, self.outputs)
        self.resume.click(lambda j: act(runner.resume, j), self.job, self.outputs)
        self.job.input(lambda j: self.view(j, force=True), self.job, self.outputs)
        self.timer.tick(self.view, [self.following, self.shown], self.outputs,
                        show_progress="hidden")
