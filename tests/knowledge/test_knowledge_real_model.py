"""A knowledge check written and run by the real bundled model (slow)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from core.documents.chunking import ChunkSpec
from core.documents.service import IncomingFile
from core.knowledge.check import BuildRequest
from core.knowledge.scoring import fact_match
from core.settings import Settings

pytestmark = pytest.mark.slow

CACHE = Path(os.environ.get("REFINERY_MODEL_CACHE", "/work/cache/models"))
HANDBOOK = (
    "The Zorblax 3000 coffee machine was released in March 2019 by Quillfeather Ltd. "
    "It brews 14 cups per hour.\n\n"
    "Employees at Quillfeather receive 27 days of paid leave per year. Leave requests go to "
    "the HR portal called Bramble.\n\n"
    "The Quillfeather headquarters are in Tallinn, on Veski Street. The building has 6 floors "
    "and opened in 2011.\n\n"
    "Support tickets must be answered within 4 hours. Critical incidents are escalated to the "
    "on-call lead, Maria Okafor.\n\n"
    "The Quillfeather mascot is a blue heron named Pilvi. It appears on every product box.\n\n"
    "New staff complete a safety course called Firewalk during their first week."
)


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    from core.services import build_services

    if not (CACHE / "SmolLM2-135M-Instruct").is_dir():
        pytest.skip(f"no converted model in {CACHE}")
    services = build_services(Settings(engine="transformers",
                                       data_dir=tmp_path_factory.mktemp("kc"), cache_dir=CACHE))
    yield services
    services.close()


def test_real_model_builds_a_check_and_grounding_helps(real):
    [result] = real.documents.ingest(
        [IncomingFile("handbook.txt", io.BytesIO(HANDBOOK.encode()))],
        spec=ChunkSpec(size=40, overlap=0),
    )
    assert result.ok, result.reason
    started = real.knowledge.start_build(BuildRequest(name="handbook", max_items=6))
    check = real.knowledge.wait(started["id"])
    assert check["status"] == "ready", check["message"]
    items = real.knowledge.items(check["id"])
    chunks = {c["id"]: c["text"] for c in real.documents.store.chunks_of(result.document_id)}
    print(f"\n{len(items)} item(s) from {len(chunks)} chunk(s): {check['message']}")
    for item in items:
        print(f"  Q: {item['question']}  A: {item['reference']}")
        assert fact_match(chunks[item["chunk_id"]], item["reference"])
    assert items, "the model wrote no usable item"

    ungrounded, grounded = real.knowledge_runs.start(check["id"])
    assert real.knowledge_runs.wait_idle(1800)
    scores = {}
    for name, run_id in (("ungrounded", ungrounded), ("grounded", grounded)):
        run = real.knowledge_runs.get(run_id)
        assert run["status"] == "done", run["error"]
        scores[name] = run["summary"]
        print(f"base {name}: {run['summary']['correct']}/{run['summary']['items']} "
              f"fact match, token F1 {run['summary']['token_f1']:.2f}")
        for row in run["items"]:
            print(f"  [{'x' if row['match'] else ' '}] {row['question']} -> {row['answer']!r}")
    assert scores["grounded"]["correct"] >= scores["ungrounded"]["correct"]
