"""Documents tab: upload many files, see each file's result, browse, re-chunk, delete, search."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd

from core.documents.chunking import ChunkSpec
from core.documents.parsing import SUFFIXES
from core.documents.service import IncomingFile
from core.services import Services
from ui.errors import problem, shows_errors
from ui.live import Live
from ui.readable import frame, named
from ui.uploads import uploaded_file

DOCUMENT_COLUMNS = [
    "name", "kind", "pages", "chunks", "duplicates", "chunk tokens", "overlap", "size",
    "added", "id",
]  # fmt: skip
PREVIEW_ROWS = 200
HIT_COLUMNS = ["score", "document", "page", "text"]


def documents_frame(services: Services) -> pd.DataFrame:
    rows = [{**d, "chunk tokens": d["chunk_tokens"], "overlap": d["chunk_overlap"],
             "size": f"{d['size_bytes'] / 1024:.1f} KB", "added": d["created_at"]}
            for d in services.documents.list()]
    return frame(rows, DOCUMENT_COLUMNS, ids=("id",))


def document_choices(services: Services) -> list[tuple[str, str]]:
    return [(named(d["name"], d["id"]), d["id"]) for d in services.documents.list()]


def preview_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "#": row["seq"] + 1,
                "page": row["page"] if row["page"] is not None else "",
                "tokens": row["token_count"],
                "chars": f"{row['char_start']}-{row['char_end']}",
                "duplicate of": (row["duplicate_of"] or "")[:8],
                "text": row["text"],
            }
            for row in rows
        ],
        columns=["#", "page", "tokens", "chars", "duplicate of", "text"],
    )


def build_documents_tab(services: Services, live: Live) -> None:
    spec = services.documents.spec
    with gr.Tab("Documents", id="documents"):
        with gr.Row():
            with gr.Column(scale=2):
                files = uploaded_file(
                    label=f"Files ({', '.join(sorted(SUFFIXES))})",
                    file_count="multiple",
                    file_types=sorted(SUFFIXES),
                    type="filepath",
                )
            with gr.Column(scale=1):
                size = gr.Number(value=spec.size, precision=0, label="Chunk size (tokens)")
                overlap = gr.Number(value=spec.overlap, precision=0, label="Overlap (tokens)")
                ingest = gr.Button("Ingest", variant="primary")
        results = gr.Textbox(label="Per-file results", lines=4, interactive=False)
        table = gr.Dataframe(
            documents_frame(services), label="Documents", interactive=False, wrap=True
        )
        with gr.Row():
            chosen = gr.Dropdown(document_choices(services), label="Document", scale=3)
            rechunk = gr.Button("Re-chunk with the sizes above", scale=1)
            delete = gr.Button("Delete", variant="stop", scale=1)
        status = gr.Markdown()
        preview = gr.Dataframe(
            preview_frame([]), label="Chunks", interactive=False, wrap=True, max_height=420
        )
        with gr.Row():
            query = gr.Textbox(label="Search the documents", scale=4)
            k = gr.Slider(1, 20, value=5, step=1, label="Results", scale=1)
            search = gr.Button("Search", scale=1)
        found_status = gr.Markdown()
        hits = gr.Dataframe(
            pd.DataFrame(columns=HIT_COLUMNS), label="Nearest chunks", interactive=False, wrap=True
        )

    def overview(selected=None):
        choices = document_choices(services)
        keep = selected if selected in {value for _, value in choices} else None
        return documents_frame(services), gr.update(choices=choices, value=keep)

    @shows_errors(lambda m: (problem(m), *overview()))
    def run_ingest(paths, size_value, overlap_value, progress=gr.Progress()):  # noqa: B008
        if not paths:
            return "⚠️ Choose one or more files first.", *overview()
        chunk_spec = ChunkSpec(size=int(size_value), overlap=int(overlap_value))
        outcome = services.documents.ingest(
            [IncomingFile(Path(p).name, Path(p)) for p in paths],
            spec=chunk_spec,
            progress=lambda fraction, message: progress(fraction, desc=message),
        )
        ok = sum(result.ok for result in outcome)
        lines = [f"{ok} of {len(outcome)} file(s) ingested."]
        return "\n".join([*lines, *(result.line() for result in outcome)]), *overview()

    @shows_errors(lambda m: (None, problem(m)))
    def show(document_id):
        if not document_id:
            return None, ""
        rows = services.documents.preview(document_id, limit=PREVIEW_ROWS)
        more = f" (first {PREVIEW_ROWS})" if len(rows) == PREVIEW_ROWS else ""
        return preview_frame(rows), f"{len(rows)} chunk(s){more}."

    @shows_errors(lambda m, document_id, *_: (problem(m), None, *overview(document_id)),
                  with_inputs=True)
    def run_rechunk(document_id, size_value, overlap_value, progress=gr.Progress()):  # noqa: B008
        if not document_id:
            return "⚠️ Pick a document first.", None, *overview()
        progress(0.1, desc="re-chunking and embedding")
        count = services.documents.rechunk(
            document_id, ChunkSpec(size=int(size_value), overlap=int(overlap_value))
        )
        chunks, _ = show(document_id)
        return f"✅ Re-chunked into {count} chunk(s).", chunks, *overview(document_id)

    @shows_errors(lambda m: (problem(m), None, *overview()))
    def run_delete(document_id):
        if not document_id:
            return "⚠️ Pick a document first.", None, *overview()
        name = services.documents.get(document_id).name
        services.documents.delete(document_id)
        return f"🗑️ Deleted {name}.", None, *overview()

    @shows_errors(lambda m: (None, problem(m)))
    def run_search(text, count):
        found = services.documents.search(text, k=int(count))
        found_frame = pd.DataFrame(
            [
                {
                    "score": round(hit.score, 3),
                    "document": hit.source,
                    "page": hit.page if hit.page is not None else "",
                    "text": hit.text,
                }
                for hit in found
            ],
            columns=HIT_COLUMNS,
        )
        return found_frame, (f"{len(found)} result(s)." if found
                             else "No documents to search yet.")

    ingest.click(run_ingest, [files, size, overlap], [results, table, chosen],
                 show_progress_on=results)
    live.on_change(overview, [chosen], [table, chosen])
    chosen.input(show, [chosen], [preview, status])
    rechunk.click(run_rechunk, [chosen, size, overlap], [status, preview, table, chosen],
                  show_progress_on=status)
    delete.click(run_delete, [chosen], [status, preview, table, chosen])
    query.submit(run_search, [query, k], [hits, found_status])
    search.click(run_search, [query, k], [hits, found_status])
