"""Inline [n] markers: each source is tied to the answer sentence that shares most of its words."""

from __future__ import annotations

from core.documents.grounding import mark_citations
from core.documents.service import SearchHit


def hit(source: str, text: str) -> SearchHit:
    return SearchHit(chunk_id=source, document_id=source, source=source, page=None, score=0.5,
                     text=text)


SOURCES = [
    hit("warranty.md", "Every kettle has a two year warranty. Returns take 30 days."),
    hit("notes.txt", "The installer prints an error code when it fails."),
]


def test_each_source_marks_the_sentence_it_supports():
    answer = "Hello! Every kettle has a two year warranty. The installer prints an error code."
    assert mark_citations(answer, SOURCES) == (
        "Hello! Every kettle has a two year warranty [1]. The installer prints an error code [2]."
    )


def test_unsupported_sentences_and_cited_sources_get_no_new_marker():
    assert mark_citations("I do not know that.", SOURCES) == "I do not know that."
    own = "Kettles have a two year warranty [1]. The installer prints an error code."
    assert mark_citations(own, SOURCES) == own.replace("code.", "code [2].")
    # One shared word is not support, and a text without sentence ends still gets its marker.
    assert mark_citations("A kettle.", SOURCES) == "A kettle."
    assert mark_citations("returns take 30 days", SOURCES) == "returns take 30 days [1]"
