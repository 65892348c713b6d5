"""Read-only view of logged turns for bias reports: one row per turn and rater."""

from __future__ import annotations

import pandas as pd

from core.store.database import Database

# Columns a reviewer can group by; each is something the studio already records.
SENSITIVE_COLUMNS = ("rater", "user", "model", "document_source", "tag", "finish_reason")

_TURNS = """
SELECT i.id AS response_id,
       i.user_id AS user,
       coalesce(r.rater, '(unrated)') AS rater,
       i.model_id || coalesce('+' || i.adapter_version, '') AS model,
       i.adapter_version,
       CASE r.thumb WHEN 'up' THEN 1.0 WHEN 'down' THEN 0.0 END AS thumb_up,
       CAST(r.rating AS DOUBLE) AS stars,
       i.latency_ms,
       i.finish_reason,
       coalesce(r.tags[1], '(no tag)') AS tag,
       coalesce((SELECT d.name FROM chunks c JOIN documents d ON d.id = c.document_id
                 WHERE c.id = json_extract_string(i.retrieved_chunk_ids, '$[0]')),
                '(no document)') AS document_source,
       i.prompt,
       i.response
FROM interactions i LEFT JOIN ratings r ON r.interaction_id = i.id
ORDER BY i.created_at
"""


class FairnessData:
    def __init__(self, db: Database) -> None:
        self.db = db

    def turns(self) -> pd.DataFrame:
        return self.db.fetch_df(_TURNS)
