"""The document routes over real HTTP, and a grounded chat turn that logs its sources."""

from __future__ import annotations

from tests.sample_files import make_encrypted_pdf, make_pdf

PAGES = [
    "Our support desk answers e-mails within two working days.",
    "The spare battery for the X200 drill costs 49 euros and charges in forty minutes.",
]


def upload(client, *files):
    return client.post(
        "/api/v1/documents",
        files=[("files", (name, data, "application/octet-stream")) for name, data in files],
    )


def test_upload_search_delete_round_trip(client):
    response = upload(
        client,
        ("manual.pdf", make_pdf(PAGES)),
        ("locked.pdf", make_encrypted_pdf(["x"])),
        ("blob.txt", bytes(range(256)) * 32),
        ("empty.csv", b""),
        ("faq.md", b"# FAQ\n\nShipping to Norway takes five days."),
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["ingested"], body["failed"]) == (2, 3)
    outcome = {r["name"]: r["error"] for r in body["results"]}
    assert outcome == {
        "manual.pdf": None,
        "locked.pdf": "encrypted",
        "blob.txt": "binary_file",
        "empty.csv": "empty_file",
        "faq.md": None,
    }
    manual_id = body["results"][0]["document_id"]

    listed = client.get("/api/v1/documents").json()["items"]
    assert {d["name"] for d in listed} == {"manual.pdf", "faq.md"}

    found = client.post("/api/v1/search", json={"query": "battery price", "k": 2}).json()
    top = found["results"][0]
    assert (top["source"], top["page"], top["document_id"]) == ("manual.pdf", 2, manual_id)
    assert "49 euros" in top["text"] and 0 < top["score"] <= 1

    chunks = client.get(f"/api/v1/documents/{manual_id}/chunks").json()["items"]
    assert [c["page"] for c in chunks] == [1, 2]

    rechunked = client.post(
        f"/api/v1/documents/{manual_id}/rechunk", json={"chunk_tokens": 64, "chunk_overlap": 8}
    )
    assert rechunked.status_code == 200 and rechunked.json()["chunks"] == 2

    assert client.delete(f"/api/v1/documents/{manual_id}").json() == {"deleted": manual_id}
    assert client.delete(f"/api/v1/documents/{manual_id}").status_code == 404
    found = client.post("/api/v1/search", json={"query": "battery price", "k": 5}).json()
    assert {r["source"] for r in found["results"]} == {"faq.md"}


def test_bad_requests_are_4xx_json(client):
    assert client.post("/api/v1/search", json={"query": " ", "k": 3}).status_code == 400
    assert client.post("/api/v1/search", json={"query": "x", "k": 0}).status_code == 400
    assert client.post("/api/v1/search", json={"query": "x", "extra": 1}).status_code == 422
    response = client.post("/api/v1/documents")
    assert response.status_code == 422 and response.json()["error"]
    bad_spec = client.post(
        "/api/v1/documents",
        files=[("files", ("a.txt", b"hello", "text/plain"))],
        data={"chunk_tokens": "4"},
    )
    assert bad_spec.status_code == 400 and "chunk size" in bad_spec.json()["error"]
    unsupported = upload(client, ("run.exe", b"MZ")).json()["results"][0]
    assert unsupported["error"] == "unsupported_type"
    assert client.get("/api/v1/documents/nope/chunks").status_code == 404


def test_grounded_chat_logs_and_returns_its_sources(client, services):
    upload(client, ("manual.pdf", make_pdf(PAGES)))
    response = client.post(
        "/api/v1/chat",
        json={
            "prompt": "How much is a spare battery for the drill?",
            "use_documents": True,
            "documents_k": 2,
            "max_new_tokens": 4,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    sources = body["sources"]
    assert sources and sources[0]["document"] == "manual.pdf" and sources[0]["page"] == 2
    turn = services.log.get_turn(body["response_id"])
    assert turn["retrieved_chunk_ids"] == [s["id"] for s in sources]
    system = turn["context"][0]
    assert system["role"] == "system" and "[1] (manual.pdf, page 2)" in system["content"]

    plain = client.post("/api/v1/chat", json={"prompt": "Hello", "max_new_tokens": 2}).json()
    assert plain["sources"] == []
    assert services.log.get_turn(plain["response_id"])["retrieved_chunk_ids"] is None


def test_sources_fit_the_budget_and_join_the_system_message(tiny_model_dir):
    from transformers import AutoTokenizer

    from core.documents.grounding import citations, fit_sources, with_sources
    from core.documents.service import SearchHit

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    hits = [
        SearchHit(chunk_id=f"c{i}", document_id="d", source="a.pdf", page=i, score=0.5,
                  text=" ".join(["word"] * 200))
        for i in (1, 2, 3)
    ]  # fmt: skip
    kept = fit_sources(tokenizer, hits, 120)
    total = sum(len(tokenizer(h.text, add_special_tokens=False)["input_ids"]) for h in kept)
    assert 1 <= len(kept) < 3 and total <= 130
    messages = with_sources(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], kept
    )
    assert len(messages) == 2 and messages[0]["content"].startswith("Be brief.\n\n")
    assert "[1] (a.pdf, page 1)" in messages[0]["content"]
    assert with_sources([{"role": "user", "content": "Hi"}], []) == [
        {"role": "user", "content": "Hi"}
    ]
    assert citations(kept).startswith("[1] a.pdf, page 1 · score 0.50\n")
