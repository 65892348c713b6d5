"""Read-only totals over the chat log for the dashboard (no tables of its own)."""

from __future__ import annotations

from core.store.database import Database


class DashboardQueries:
    def __init__(self, db: Database) -> None:
        self.db = db

    def totals(self) -> dict:
        turns, conversations, users = self.db.fetch_one(
            "SELECT count(*), count(DISTINCT conversation_id), count(DISTINCT user_id)"
            " FROM interactions"
        )
        ratings, rated_turns, stars, mean_stars, up, down, corrections = self.db.fetch_one(
            """SELECT count(*), count(DISTINCT interaction_id), count(rating), avg(rating),
                      count(*) FILTER (WHERE thumb = 'up'), count(*) FILTER (WHERE thumb = 'down'),
                      count(*) FILTER (WHERE coalesce(trim(correction), '') <> '')
               FROM ratings"""
        )
        return {
            "turns": int(turns),
            "conversations": int(conversations),
            "users": int(users),
            "ratings": int(ratings),
            "rated_turns": int(rated_turns),
            "star_ratings": int(stars),
            "mean_stars": float(mean_stars) if mean_stars is not None else None,
            "thumbs_up": int(up),
            "thumbs_down": int(down),
            "thumbs_up_rate": up / (up + down) if up + down else None,
            "corrections": int(corrections),
        }

    def ratings_per_day(self, *, days: int = 90) -> list[dict]:
        """One row per day that has ratings (the latest `days` such days), oldest first."""
        rows = self.db.fetch_dicts(
            """SELECT CAST(created_at AS DATE) AS day, count(*) AS ratings,
                      avg(rating) AS mean_stars,
                      count(*) FILTER (WHERE thumb = 'up') AS thumbs_up,
                      count(*) FILTER (WHERE thumb = 'down') AS thumbs_down
               FROM ratings GROUP BY ALL ORDER BY day DESC LIMIT ?""",
            [days],
        )
        for row in rows:
            voted = row["thumbs_up"] + row["thumbs_down"]
            row["thumbs_up_rate"] = row["thumbs_up"] / voted if voted else None
            row["day"] = row["day"].isoformat()
        return rows[::-1]

    def turns_per_day(self, *, days: int = 90) -> list[dict]:
        rows = self.db.fetch_dicts(
            """SELECT CAST(created_at AS DATE) AS day, count(*) AS turns
               FROM interactions GROUP BY ALL ORDER BY day DESC LIMIT ?""",
            [days],
        )
        return [{"day": row["day"].isoformat(), "turns": row["turns"]} for row in rows[::-1]]

    def loop_counts(self) -> dict:
        """Row counts over the loop's tables in one query. The Start page shows them; the UI
        polls them as a cheap version to notice a new document, rating, dataset, job state,
        adapter, promotion, vote, label or knowledge score without re-reading every list."""
        counts = {
            "documents": "SELECT count(*) FROM documents",
            "chunks": "SELECT count(*) FROM chunks",
            "turns": "SELECT count(*) FROM interactions",
            "ratings": "SELECT count(*) FROM ratings",
            "rated_turns": "SELECT count(DISTINCT interaction_id) FROM ratings",
            "labels": "SELECT count(*) FROM curation_labels",
            "datasets": "SELECT count(*) FROM datasets",
            "runs": "SELECT count(*) FROM training_jobs",
            "active_runs": "SELECT count(*) FROM training_jobs"
                           " WHERE status IN ('queued', 'running', 'stopping')",
            "adapters": "SELECT count(*) FROM registry_entries WHERE kind = 'adapter'",
            "promotions": "SELECT count(*) FROM registry_actions WHERE kind = 'adapter'",
            "votes": "SELECT count(*) FROM votes",
            "retrievers": "SELECT count(*) FROM registry_entries WHERE kind = 'retriever'",
            "routes": "SELECT count(*) FROM routes",
            "knowledge_checks": "SELECT count(*) FROM knowledge_checks",
            "knowledge_runs_done": "SELECT count(*) FROM knowledge_runs"
                                   " WHERE status IN ('done', 'failed')",
        }
        job_states = ("SELECT coalesce(md5(string_agg(id || status, ',' ORDER BY id)), '')"
                      " FROM training_jobs")
        labels_at = "SELECT coalesce(CAST(max(updated_at) AS VARCHAR), '') FROM curation_labels"
        sql = ", ".join(f"({query})" for query in [*counts.values(), job_states, labels_at])
        row = self.db.fetch_one(f"SELECT {sql}")
        result = {name: int(value) for name, value in zip(counts, row, strict=False)}
        result["job_states"], result["labels_at"] = row[-2], row[-1]
        return result
