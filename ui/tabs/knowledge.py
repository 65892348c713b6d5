"""Knowledge tab: build a check from the documents, review its items, run it on base/adapters."""

from __future__ import annotations

import time

import gradio as gr
import pandas as pd

from core.errors import InvalidInput
from core.knowledge.check import BuildRequest
from core.knowledge.runs import ACTIVE, FINISHED
from core.services import Services
from ui.errors import problem, shows_errors
from ui.live import Live
from ui.readable import frame
from ui.scores import model_name, scores_markdown
from ui.uploads import uploaded_file

ITEM_COLUMNS = ["id", "question", "reference", "source", "origin"]
RUN_COLUMNS = ["created_at", "kind", "model", "grounded", "status", "done", "total",
               "correct", "fact_match", "token_f1", "trigger", "error", "id"]
ANSWER_COLUMNS = ["question", "reference", "answer", "match", "f1"]
POLL_S = 1.0


def check_choices(services: Services) -> list[tuple[str, str]]:
    return [(f"{c['name']} v{c['version']} · {c['item_count']} items · {c['status']}", c["id"])
            for c in services.knowledge.list()]


def items_frame(services: Services, check_id: str | None) -> pd.DataFrame:
    items = services.knowledge.items(check_id) if check_id else []
    return pd.DataFrame(items, columns=ITEM_COLUMNS)


def runs_frame(services: Services, runs: list[dict]) -> pd.DataFrame:
    rows = [{**run, "model": model_name(services, run["model"]),
             **{k: (run["summary"] or {}).get(k) for k in ("correct", "fact_match", "token_f1")}}
            for run in runs]
    return frame(rows, RUN_COLUMNS, ids=("id",))


def table_rows(frame: pd.DataFrame) -> list[dict]:
    """The edited table as items; rows left blank are dropped (that deletes an item)."""
    rows = []
    for record in frame.fillna("").to_dict("records"):
        if not str(record.get("question", "")).strip() and not str(
                record.get("reference", "")).strip():
            continue
        rows.append({k: str(v) if v != "" else None for k, v in record.items()})
    return rows


def build_knowledge_tab(services: Services, live: Live) -> None:
    knowledge, runs = services.knowledge, services.knowledge_runs
    model_choices = services.arena.resolver.choices

    with gr.Tab("Knowledge", id="knowledge") as tab:
        gr.Markdown("Does the model know your documents' facts, and has it kept its general "
                    "ability? A check's questions never train.")
        scores = gr.Markdown(scores_markdown(services))
        with gr.Accordion("Build a check from the documents", open=False):
            with gr.Row():
                name = gr.Textbox("documents", label="Name")
                documents = gr.Dropdown(
                    [(d["name"], d["id"]) for d in services.documents.list()], multiselect=True,
                    label="Documents (none: all)")
                most = gr.Number(20, label="At most this many items", precision=0, minimum=1)
                build = gr.Button("Build check", variant="primary")
        with gr.Row():
            listed = check_choices(services)  # the newest check is shown first
            check = gr.Dropdown(listed, value=listed[0][1] if listed else None,
                                label="Knowledge check", scale=3)
            refresh = gr.Button("↻", scale=0)
        status = gr.Markdown()
        items = gr.Dataframe(pd.DataFrame(columns=ITEM_COLUMNS), label="Items (edit cells, add "
                             "rows, blank a row to delete it; a check that has runs is saved as "
                             "its next version)", interactive=True, wrap=True)
        with gr.Row():
            save = gr.Button("Save items")
            delete = gr.Button("Delete check", variant="stop")
            fmt = gr.Radio(["jsonl", "csv"], value="jsonl", label="Export format")
            export = gr.Button("Export")
        with gr.Row():
            upload = uploaded_file(label="Import a check (.jsonl/.csv: question, reference)",
                                   file_types=[".jsonl", ".csv"])
            download = gr.File(label="Exported check", interactive=False)
        with gr.Row():
            model = gr.Dropdown(model_choices(), value="base", label="Model")
            grounding = gr.CheckboxGroup(["ungrounded", "grounded"],
                                         value=["ungrounded", "grounded"], label="Runs")
            general = gr.Checkbox(True, label="Also the general-ability set")
            run = gr.Button("Run check", variant="primary")
            cancel = gr.Button("Cancel runs", variant="stop")
        history = gr.Dataframe(label="Runs of this check (and general runs)", interactive=False,
                               wrap=True, visible=False)
        pick = gr.Dropdown([], label="Show a run's answers")
        answers = gr.Dataframe(label="Answers", interactive=False, wrap=True, visible=False)

    def run_list(check_id):
        found = (runs.list(check_id) if check_id else []) + runs.list(kind="general")
        return sorted(found, key=lambda r: r["created_at"], reverse=True)

    def show(check_id, note=""):
        listed = run_list(check_id)
        return (note, items_frame(services, check_id),
                gr.update(value=runs_frame(services, listed), visible=bool(listed)),
                gr.update(choices=[(f"{r['kind']} · {r['model']} · "
                                    f"{'grounded' if r['grounded'] else 'ungrounded'} · "
                                    f"{r['status']}", r["id"]) for r in listed]),
                scores_markdown(services))

    views = [status, items, history, pick, scores]

    def reload(check_id):
        return (gr.update(choices=check_choices(services)), gr.update(choices=model_choices()),
                gr.update(choices=[(d["name"], d["id"]) for d in services.documents.list()]),
                *show(check_id))

    @shows_errors(lambda m: (gr.update(), problem(m), *[gr.skip()] * 4))
    def start_build(label, chosen, count, progress=gr.Progress()):  # noqa: B008
        started = knowledge.start_build(BuildRequest(
            name=label or "", document_ids=tuple(chosen or ()), max_items=int(count or 0)))
        while (current := knowledge.get(started["id"]))["status"] == "building":
            progress(current["progress"], desc=current["message"] or "writing questions")
            time.sleep(POLL_S)
        note = (f"✅ {current['message']}" if current["status"] == "ready"
                else f"⚠️ {current['message']}")
        return (gr.update(choices=check_choices(services), value=current["id"]),
                *show(current["id"], note))

    @shows_errors(lambda m, action, check_id, *_: (gr.update(), *show(check_id, problem(m))),
                  with_inputs=True)
    def act(action, check_id, *args):
        if not check_id:
            raise InvalidInput("choose a knowledge check")
        result = action(check_id, *args)
        target = result["id"] if isinstance(result, dict) else None
        note = (f"Saved as **v{result['version']}**." if target else "Deleted.")
        return gr.update(choices=check_choices(services), value=target), *show(target, note)

    @shows_errors(lambda m: (gr.update(), problem(m), *[gr.skip()] * 4), expected=(OSError,))
    def import_check(file):
        if not file:
            return gr.skip(), *[gr.skip()] * 5
        with open(file, "rb") as handle:
            made = knowledge.import_file(handle.read(), file.rsplit("/", 1)[-1])
        return (gr.update(choices=check_choices(services), value=made["id"]),
                *show(made["id"], f"Imported {made['item_count']} items."))

    @shows_errors(lambda m: (None, problem(m)))
    def export_check(check_id, chosen_format):
        text, filename = knowledge.export(check_id or "", chosen_format)
        folder = services.settings.data_dir / "exports" / "knowledge"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / filename).write_text(text, encoding="utf-8")
        return str(folder / filename), f"Exported {filename}."

    @shows_errors(lambda m, check_id, *_: show(check_id, problem(m)), with_inputs=True)
    def start_runs(check_id, chosen_model, chosen, with_general,
                   progress=gr.Progress()):  # noqa: B008
        if not check_id:
            raise InvalidInput("choose a knowledge check")
        ids = runs.start(check_id, model=chosen_model,
                         grounded=tuple(g == "grounded" for g in chosen or ()),
                         general=bool(with_general))
        while not all(runs.get(i)["status"] in FINISHED for i in ids):
            done = sum(runs.get(i)["done"] for i in ids)
            total = sum(runs.get(i)["total"] for i in ids)
            progress(done / max(total, 1), desc=f"{done}/{total} questions")
            time.sleep(POLL_S)
        ended = [runs.get(i) for i in ids]
        failed = [r["error"] for r in ended if r["status"] == "failed"]
        if failed:
            return show(check_id, f"⚠️ {failed[0]}")
        if any(r["status"] == "cancelled" for r in ended):
            return show(check_id, "Cancelled: the answers given so far are kept.")
        return show(check_id, "✅ Runs finished.")

    @shows_errors(lambda m, check_id: show(check_id, problem(m)), with_inputs=True)
    def cancel_runs(check_id):
        active = [r for r in run_list(check_id) if r["status"] in ACTIVE]
        for found in active:
            runs.cancel(found["id"])
        return show(check_id, f"Cancelling {len(active)} run(s): each stops after its current "
                              "batch." if active else "No run is queued or running.")

    def answers_of(run_id):
        if not run_id:
            return gr.update(visible=False)
        run = runs.get(run_id)
        return gr.update(value=frame(run["items"] or [], ANSWER_COLUMNS), visible=True)

    build.click(start_build, [name, documents, most], [check, *views], show_progress_on=status)
    check.change(show, [check], views)
    tab.select(show, [check], views)
    refresh.click(reload, [check], [check, model, documents, *views])
    save.click(lambda c, f: act(lambda i, rows: knowledge.replace_items(i, rows), c,
                                table_rows(f)), [check, items], [check, *views])
    delete.click(lambda c: act(knowledge.delete, c), [check], [check, *views])
    upload.upload(import_check, [upload], [check, *views])
    export.click(export_check, [check, fmt], [download, status])
    run.click(start_runs, [check, model, grounding, general], views, show_progress_on=status)
    cancel.click(cancel_runs, [check], views)
    pick.change(answers_of, [pick], [answers])
    # Scores, checks and models follow the store (a run finished elsewhere, a new adapter).
    live.on_change(lambda: (scores_markdown(services),
                            gr.update(choices=check_choices(services)),
                            gr.update(choices=model_choices())), None, [scores, check, model])
