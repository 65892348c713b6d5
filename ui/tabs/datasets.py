"""Datasets tab: freeze the Feedback selection or documents into versions; inspect, export."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import pandas as pd

from core.datasets.augment import Augmentation
from core.datasets.formats import EXPORT_FORMATS
from core.datasets.rows import KINDS
from core.datasets.versions import BuildSpec
from core.feedback.turn_filter import TurnFilter
from core.services import Services
from core.training.spec import RECIPES
from ui.charts import dataset_stats_figure
from ui.errors import problem, shows_errors, warn
from ui.live import Live
from ui.readable import frame, named, short_id
from ui.uploads import uploaded_file

PREVIEW_ROWS = 50
KIND_HELP = {
    "sft": "chat examples: corrections as targets, else answers rated at least *min stars*",
    "preference": "chosen/rejected: correction vs answer, or answers to one prompt rated apart",
    "embedding": "query → helpful grounded chunk, with negatives and mined hard negatives",
    "text": "document chunks as plain text, plus optional synthetic QA pairs",
}


def datasets_frame(services: Services) -> pd.DataFrame:
    rows = [
        {"name": d.name, "version": d.version, "kind": d.kind, "train": d.train_count,
         "validation": d.validation_count, "created": d.created_at, "id": d.id}
        for d in services.datasets.list()
    ]
    return frame(rows, ["name", "version", "kind", "train", "validation", "created", "id"],
                 ids=("id",))


def preview_frame(rows: list[dict]) -> pd.DataFrame:
    flat = []
    for row in rows[:PREVIEW_ROWS]:
        item = {k: v for k, v in row.items() if k != "meta"}
        if "messages" in item:
            item["messages"] = "\n".join(f"{m['role']}: {m['content']}" for m in item["messages"])
        if "negatives" in item:
            item["negatives"] = "\n---\n".join(item["negatives"])
        meta = row.get("meta", {})
        item["label"] = meta.get("label")
        item["marked"] = "synthetic" if meta.get("synthetic") else meta.get("augmented") or ""
        item["id"] = short_id(item.pop("id", ""))  # last and short: a content hash
        flat.append(item)
    return pd.DataFrame(flat)


def stats_text(dataset) -> str:
    counts = dataset.stats["counts"]
    lengths = dataset.stats["token_lengths"]["train"]
    marked = dataset.stats["marked"]["train"]
    return (
        f"**{dataset.name} v{dataset.version}** ({dataset.kind}) · train {counts['train']:,}, "
        f"validation {counts['validation']:,} · {dataset.stats.get('length_unit', 'tokens')} "
        f"per train row: mean {lengths['mean']:.0f}, "
        f"p95 {lengths['p95']:.0f}, max {lengths['max']} · synthetic {marked['synthetic']}, "
        f"augmented {marked['augmented']}"
    )


def build_datasets_tab(services: Services, live: Live,
                       selection: gr.State | None = None) -> None:
    selection = selection or gr.State(TurnFilter())
    with gr.Tab("Datasets", id="datasets") as tab:
        gr.Markdown(
            "Freeze the rows selected in the **Feedback** tab (or your documents) into an "
            "immutable, versioned dataset with its lineage."
        )
        with gr.Row():
            name = gr.Textbox(label="Name", value="my-dataset")
            kind = gr.Radio(list(KINDS), value="sft", label="Kind")
            seed = gr.Number(value=0, precision=0, label="Seed")
            fraction = gr.Slider(0, 0.5, value=0.1, step=0.05, label="Validation share")
        kind_help = gr.Markdown(KIND_HELP["sft"])
        with gr.Row():
            min_rating = gr.Slider(1, 5, value=4, step=1, label="Min stars (sft, embedding)")
            documents = gr.Dropdown([], multiselect=True, label="Documents (text; none = all)")
            synthetic = gr.Number(value=0, precision=0, minimum=0, label="Synthetic QA pairs")
        with gr.Row():
            recipe = gr.Dropdown([("none", ""), *[(r, r) for r in RECIPES]], value="",
                                 label="Recipe (kind sft)",
                                 info="teach documents: several questions per fact of your "
                                      "documents, grounded variants, general replay · learn "
                                      "corrections: corrected turns under reworded questions")
            written = gr.Number(value=1, precision=0, minimum=0, maximum=5,
                                label="Questions the model writes per fact / correction")
        with gr.Row():
            perturb = gr.Number(value=0, precision=0, minimum=0, maximum=5, label="Typo copies")
            synonym = gr.Number(value=0, precision=0, minimum=0, maximum=5, label="Synonym copies")
            paraphrase = gr.Number(
                value=0, precision=0, minimum=0, maximum=5, label="Paraphrase copies (model)"
            )
            build = gr.Button("Build dataset", variant="primary")
        built = gr.Markdown()
        chosen = gr.Dropdown([], label="Dataset")
        listing = gr.Dataframe(interactive=False, max_height=300)
        summary = gr.Markdown()
        plot = gr.Plot()
        with gr.Accordion("Rows (first 50 of each split)", open=False):
            train_rows = gr.Dataframe(interactive=False, wrap=True, max_height=400, label="train")
            validation_rows = gr.Dataframe(
                interactive=False, wrap=True, max_height=300, label="validation"
            )
        with gr.Accordion("Lineage", open=False):
            lineage = gr.JSON()
        with gr.Row():
            fmt = gr.Radio(list(EXPORT_FORMATS), value="jsonl", label="Export format")
            export = gr.Button("Export")
            download = gr.File(label="Export", interactive=False)
        formats = "OpenAI chat JSONL, Alpaca JSON, CSV with prompt/response, Parquet"
        with gr.Accordion(f"Import ({formats})", open=False):
            upload = uploaded_file(file_types=[".jsonl", ".json", ".csv", ".parquet"],
                                   type="filepath")
            import_name = gr.Textbox(label="Name (default: the file name)")
            import_button = gr.Button("Import")
            imported = gr.Markdown()

    def choices() -> tuple[pd.DataFrame, list, list]:
        ids = [(f"{d.name} v{d.version} ({d.kind})", d.id) for d in services.datasets.list()]
        docs = [(named(d["name"], d["id"]), d["id"]) for d in services.documents.list()]
        return datasets_frame(services), ids, docs

    def refresh_all():
        listed, ids, docs = choices()
        return listed, gr.update(choices=ids), gr.update(choices=docs)

    @shows_errors(lambda m: (problem(m), gr.skip(), gr.skip(), gr.skip()))
    def make(flt, name_, kind_, seed_, fraction_, min_, docs, synth, typo, syn, para, recipe_,
             written_, progress):
        spec = BuildSpec(
            name=name_, kind=kind_, selection=flt, seed=int(seed_ or 0),
            validation_fraction=float(fraction_), min_rating=int(min_),
            document_ids=tuple(docs or ()), synthetic_qa=int(synth or 0),
            augmentation=Augmentation(
                perturb=int(typo or 0), synonym=int(syn or 0), paraphrase=int(para or 0)
            ),
            recipe=recipe_ or "", written_questions=int(written_ or 0),
        )  # fmt: skip
        if spec.synthetic:
            job = services.dataset_jobs.start(spec)
            return (f"⏳ the base model writes rows in the background: job **{job.id}** "
                    f"(progress: GET /api/v1/datasets/jobs/{job.id}); press Refresh list "
                    "when it is done", gr.skip(), gr.skip(), gr.skip())
        dataset = services.datasets.build(
            spec, progress=lambda f, message: progress(f, desc=message)
        )
        listed, ids, docs_ = choices()
        source = "your documents" if kind_ == "text" else json.dumps(flt.to_dict())
        message = f"✅ built from {source}: " + stats_text(dataset)
        return message, listed, gr.update(choices=ids, value=dataset.id), gr.update(choices=docs_)

    def make_with_progress(*values, progress=gr.Progress()):  # noqa: B008 (gradio's idiom)
        return make(*values, progress)

    @shows_errors(lambda m: (problem(m), None, None, None, None))
    def show(dataset_id: str):
        if not dataset_id:
            return "", None, None, None, None
        dataset = services.datasets.get(dataset_id)
        return (
            stats_text(dataset),
            dataset_stats_figure(dataset.stats),
            preview_frame(dataset.train),
            preview_frame(dataset.validation),
            dataset.lineage,
        )

    @shows_errors(warn(None))
    def export_file(dataset_id: str, fmt_: str):
        if not dataset_id:
            return None
        return str(services.datasets.export(dataset_id, fmt_))

    @shows_errors(lambda m: (problem(m), gr.skip(), gr.skip()))
    def import_file(path: str | None, name_: str, seed_, fraction_):
        if not path:
            return "⚠️ choose a file first", gr.skip(), gr.skip()
        dataset = services.datasets.import_file(
            Path(path).read_bytes(), Path(path).name, name=name_ or None,
            seed=int(seed_ or 0), validation_fraction=float(fraction_),
        )  # fmt: skip
        listed, ids, _ = choices()
        return (
            f"✅ imported **{dataset.name} v{dataset.version}**: " + stats_text(dataset),
            listed,
            gr.update(choices=ids, value=dataset.id),
        )

    kind.change(lambda k: KIND_HELP[k], kind, kind_help)
    tab.select(refresh_all, None, [listing, chosen, documents])
    live.on_change(refresh_all, None, [listing, chosen, documents])
    build.click(
        make_with_progress,
        [selection, name, kind, seed, fraction, min_rating, documents, synthetic, perturb,
         synonym, paraphrase, recipe, written],
        [built, listing, chosen, documents], show_progress_on=built,
    )  # fmt: skip
    chosen.change(show, chosen, [summary, plot, train_rows, validation_rows, lineage])
    export.click(export_file, [chosen, fmt], download)
    import_button.click(
        import_file, [upload, import_name, seed, fraction], [imported, listing, chosen]
    )
