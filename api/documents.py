"""Routes for the document store and semantic search over its chunks."""

from __future__ import annotations

import io
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile
from pydantic import WithJsonSchema

from api.bodies import MAX_INT
from api.bodies import Body as Strict
from core.documents.chunking import ChunkSpec
from core.documents.service import IncomingFile
from core.services import Services

# a file's content sent without a file name: bounded, like every part, by the upload limit
NamelessPart = Annotated[str, WithJsonSchema({"type": "string", "format": "binary"})]


class SearchBody(Strict):
    query: str
    k: int = 5


class RechunkBody(Strict):
    chunk_tokens: int
    chunk_overlap: int


def build_documents_router(services: Services) -> APIRouter:
    router = APIRouter()
    documents = services.documents

    @router.post("/documents")
    def upload(
        # A part without a file name arrives as a string; it fails alone instead of the upload.
        files: Annotated[list[UploadFile | NamelessPart], File()],
        chunk_tokens: Annotated[int | None, Form(ge=0, le=MAX_INT)] = None,
        chunk_overlap: Annotated[int | None, Form(ge=0, le=MAX_INT)] = None,
    ) -> dict:
        """Ingest many files; each gets its own ok/error line, and one bad file stops no other."""
        spec = ChunkSpec(
            size=chunk_tokens or documents.spec.size,
            overlap=documents.spec.overlap if chunk_overlap is None else chunk_overlap,
        )
        incoming = [
            IncomingFile("", io.BytesIO(part.encode("utf-8")))
            if isinstance(part, str)
            else IncomingFile(part.filename or "", part.file)
            for part in files
        ]
        results = documents.ingest(incoming, spec=spec)
        return {
            "ingested": sum(result.ok for result in results),
            "failed": sum(not result.ok for result in results),
            "results": [asdict(result) for result in results],
        }

    @router.get("/documents")
    def list_documents() -> dict:
        return {"items": documents.list()}

    @router.get("/documents/{document_id}/chunks")
    def chunks(
        document_id: str,
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0, le=MAX_INT),
    ) -> dict:
        return {"items": documents.preview(document_id, limit=limit, offset=offset)}

    @router.post("/documents/{document_id}/rechunk")
    def rechunk(document_id: str, body: RechunkBody) -> dict:
        spec = ChunkSpec(size=body.chunk_tokens, overlap=body.chunk_overlap)
        return {"document_id": document_id, "chunks": documents.rechunk(document_id, spec)}

    @router.delete("/documents/{document_id}")
    def delete(document_id: str) -> dict:
        documents.delete(document_id)
        return {"deleted": document_id}

    @router.post("/search")
    def search(body: SearchBody) -> dict:
        hits = documents.search(body.query, k=body.k)
        return {"query": body.query, "results": [asdict(hit) for hit in hits]}

    return router
