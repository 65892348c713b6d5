"""The studio's services, built once by app.py and handed to the API and the UI."""

from __future__ import annotations

from dataclasses import dataclass

from core.arena import ArenaService
from core.chat import ChatService
from core.datasets import DatasetService
from core.document_service import DocumentService, build_document_service
from core.evaluation import EvaluationService
from core.experiments import ExperimentService
from core.explain import ExplainService
from core.fairness import FairnessService
from core.feedback import FeedbackService
from core.models import ModelService
from core.modelspec import ModelResolver
from core.quality import QualityService
from core.registry import ModelRegistry
from core.settings import Settings
from core.store import Database, open_database
from core.store.arena import ArenaStore
from core.store.chatlog import ChatLog
from core.store.curation import CurationStore
from core.store.datasets import DatasetStore
from core.store.explain import ExplanationCache
from core.store.fairness import FairnessData
from core.store.registry import RegistryStore
from core.store.training import TrainingStore
from core.training.export import ModelExporter
from core.training.runner import TrainingRunner
from core.training.search import SearchService

VERSION = "0.1.0"


@dataclass
class Services:
    settings: Settings
    db: Database
    models: ModelService
    log: ChatLog
    chat: ChatService
    feedback: FeedbackService
    quality: QualityService
    datasets: DatasetService
    documents: DocumentService
    arena: ArenaService
    experiments: ExperimentService
    evaluations: EvaluationService
    registry: ModelRegistry
    training: TrainingRunner
    searches: SearchService
    model_exports: ModelExporter
    explainer: ExplainService
    fairness: FairnessService

    def close(self) -> None:
        self.searches.close()
        self.training.close()
        self.db.close()


def build_services(settings: Settings) -> Services:
    db = open_database(settings.db_path)
    models = ModelService(settings.model, cache_dir=settings.models_dir, device=settings.device)
    log = ChatLog(db)
    documents = build_document_service(db, settings)
    arena_store = ArenaStore(db)
    registry = ModelRegistry(RegistryStore(db))
    resolver = ModelResolver(
        models, arena_store, registry=registry, embed=documents.embedder.embed
    )
    experiments = ExperimentService(arena_store, resolver)
    datasets = DatasetService(
        DatasetStore(db),
        CurationStore(db),
        documents.store,
        models,
        exports_dir=settings.data_dir / "exports",
    )
    training = TrainingRunner(
        TrainingStore(db),
        registry,
        runs_dir=settings.data_dir / "runs",
        models_dir=settings.models_dir,
        default_model=settings.model,
        datasets=datasets,
    )
    training.reconcile()
    explainer = ExplainService(resolver, ExplanationCache(db))
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
            experiments=experiments,
            registry=registry,
            documents=documents,
        ),
        feedback=FeedbackService(log),
        quality=QualityService(CurationStore(db)),
        datasets=datasets,
        documents=documents,
        arena=ArenaService(
            resolver,
            log,
            arena_store,
            registry=registry,
            max_prompt_chars=settings.max_prompt_chars,
            max_new_tokens=settings.max_new_tokens_limit,
        ),
        experiments=experiments,
        evaluations=EvaluationService(
            resolver,
            arena_store,
            datasets=datasets,
            embed=documents.embedder.embed,
            retrieve=lambda query: [hit.text for hit in documents.search(query, k=3)],
        ),
        registry=registry,
        training=training,
        searches=SearchService(training),
        model_exports=ModelExporter(
            models_dir=settings.models_dir, exports_dir=settings.data_dir / "exports" / "models"
        ),
        explainer=explainer,
        fairness=FairnessService(models, FairnessData(db), explainer.target),
    )
