"""The studio's services, built once by app.py and handed to the API and the UI."""

from __future__ import annotations

from dataclasses import dataclass

from core.chat import ChatService
from core.feedback import FeedbackService
from core.models import ModelService
from core.settings import Settings
from core.store import Database, open_database
from core.store.chatlog import ChatLog

VERSION = "0.1.0"


@dataclass
class Services:
    settings: Settings
    db: Database
    models: ModelService
    log: ChatLog
    chat: ChatService
    feedback: FeedbackService

    def close(self) -> None:
        self.db.close()


def build_services(settings: Settings) -> Services:
    db = open_database(settings.db_path)
    models = ModelService(settings.model, cache_dir=settings.models_dir, device=settings.device)
    log = ChatLog(db)
    return Services(
        settings=settings,
        db=db,
        models=models,
        log=log,
        chat=ChatService(
            models,
            log,
            max_prompt_chars=settings.max_prompt_chars,
            max_new_tokens=settings.max_new_tokens_limit,
        ),
        feedback=FeedbackService(log),
    )
