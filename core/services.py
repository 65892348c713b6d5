"""The studio's services, built once by app.py and handed to the API and the UI."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.audit.drift import DriftMonitor
from core.audit.explain import ExplainService
from core.audit.fairness import FairnessService
from core.comparison.arena import ArenaService
from core.comparison.evaluation import EvaluationService
from core.comparison.experiments import ExperimentService
from core.datasets.jobs import DatasetJobs
from core.datasets.versions import DatasetService
from core.documents.retrievers import RetrieverService
from core.documents.service import DocumentService, build_document_service
from core.feedback.quality import QualityService
from core.feedback.ratings import FeedbackService
from core.jobs import DATASET, EVALUATION, KNOWLEDGE, RETRAINING, SEARCH, TRAINING, JobBoard
from core.knowledge.check import KnowledgeService
from core.knowledge.runs import KnowledgeRuns, Scores
from core.operations.auth import Authenticator, build_authenticator
from core.operations.dashboard import DashboardService
from core.operations.retraining import RetrainingService
from core.paths import AllowedFolders
from core.serving.admission import Admission
from core.serving.chat import ChatService
from core.serving.defaults import ModelDefaults
from core.serving.engines.openai_remote import remote_server
from core.serving.models import ModelService
from core.serving.modelspec import ModelResolver
from core.serving.registry import ModelRegistry
from core.serving.routing import Router
from core.settings import Settings
from core.store import Database, open_database
from core.store.arena import ArenaStore
from core.store.chatlog import ChatLog
from core.store.curation import CurationStore
from core.store.dashboard import DashboardQueries
from core.store.datasets import DatasetStore
from core.store.drift import DriftData
from core.store.explain import ExplanationCache
from core.store.fairness import FairnessData
from core.store.jobs import JobStore
from core.store.knowledge import KnowledgeStore
from core.store.registry import ADAPTER, RETRIEVER, RegistryStore
from core.store.retraining import RetrainingStore
from core.store.routing import RoutingStore
from core.store.training import TrainingStore
from core.training.export import ModelExporter
from core.training.runner import TrainingRunner
from core.training.search import SearchService

VERSION = "0.1.0"


@dataclass
class Services:
    settings: Settings
    auth: Authenticator  # optional login: empty when no users are configured
    admission: Admission  # the generation queue of the API: 429 beyond max_queue
    db: Database
    jobs: JobBoard  # every long task's lifecycle, of every kind, in one stored list
    models: ModelService
    defaults: ModelDefaults  # generation defaults of the API, /v1 and the Chat tab
    log: ChatLog
    chat: ChatService
    feedback: FeedbackService
    quality: QualityService
    datasets: DatasetService
    dataset_jobs: DatasetJobs  # builds whose rows the base model writes, in the background
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
    drift: DriftMonitor
    routing: Router
    retrievers: RetrieverService
    knowledge: KnowledgeService
    knowledge_runs: KnowledgeRuns
    knowledge_scores: Scores
    # built from the services above, so set right after construction
    retraining: RetrainingService = field(init=False)
    dashboard: DashboardService = field(init=False)

    def close(self) -> None:
        self.retraining.close()
        self.searches.close()
        self.training.close()
        self.knowledge_runs.close()
        self.db.close()


def allowed_folders(settings: Settings) -> AllowedFolders:
    """What a request may name: the data dir and model cache, never the store or the lock."""
    db = settings.db_path
    protected = [db, db.with_name(db.name + ".wal"), settings.lock_path]
    return AllowedFolders(
        (settings.data_dir, settings.models_dir),
        tuple(protected + ([settings.users_file] if settings.users_file else [])),
    )


def build_services(settings: Settings) -> Services:
    db = open_database(settings.db_path)
    registry = ModelRegistry(RegistryStore(db, ADAPTER))
    jobs = JobBoard(JobStore(db))
    # work that ran in threads of the last process ended with it (training workers live on)
    jobs.interrupted((SEARCH, EVALUATION, DATASET, KNOWLEDGE))
    models = ModelService(
        settings.model,
        cache_dir=settings.models_dir,
        device=settings.device,
        trust_remote_code=settings.trust_remote_code,
        engine=settings.engine,
        remote=remote_server(settings, registry) if settings.engine == "openai" else None,
    )
    log = ChatLog(db)
    documents = build_document_service(db, settings)
    retrievers = RetrieverService(RegistryStore(db, RETRIEVER), documents)
    arena_store = ArenaStore(db)
    folders = allowed_folders(settings)
    resolver = ModelResolver(
        models, arena_store, registry=registry, embed=documents.embedder.embed, folders=folders
    )
    experiments = ExperimentService(arena_store, resolver)
    datasets = DatasetService(
        DatasetStore(db),
        CurationStore(db),
        documents.store,
        models,
        exports_dir=settings.data_dir / "exports",
        search=documents.search,
    )
    training = TrainingRunner(
        TrainingStore(db),
        registry,
        runs_dir=settings.data_dir / "runs",
        models_dir=settings.models_dir,
        default_model=settings.model,
        datasets=datasets,
        folders=folders,
        trust_remote_code=settings.trust_remote_code,
        retrievers=retrievers,
        jobs=jobs,
    )
    knowledge = KnowledgeService(KnowledgeStore(db), documents.store, models)
    knowledge_runs = KnowledgeRuns(
        KnowledgeStore(db), knowledge, models=models, registry=registry, documents=documents,
        jobs=jobs,
    )
    training.on_registered.append(knowledge_runs.after_training)
    training.reconcile()  # after the hooks: a run that finished while the app was down counts
    explainer = ExplainService(resolver, ExplanationCache(db))
    router = Router(RoutingStore(db), registry, documents.embedder.embed)
    services = Services(
        settings=settings,
        auth=build_authenticator(settings.users_file, settings.users_env),
        admission=Admission(settings.max_queue),
        db=db,
        jobs=jobs,
        models=models,
        defaults=ModelDefaults(
            models,
            max_new_tokens=min(settings.default_max_new_tokens, settings.max_new_tokens_limit),
        ),
        log=log,
        chat=ChatService(
            models,
            log,
            max_prompt_chars=settings.max_prompt_chars,
            max_new_tokens=settings.max_new_tokens_limit,
            experiments=experiments,
            registry=registry,
            documents=documents,
            router=router,
        ),
        feedback=FeedbackService(log),
        quality=QualityService(CurationStore(db)),
        datasets=datasets,
        dataset_jobs=DatasetJobs(datasets, folder=settings.data_dir / "dataset_jobs",
                                 jobs=jobs),
        documents=documents,
        arena=ArenaService(
            resolver,
            log,
            arena_store,
            registry=registry,
            documents=documents,
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
            jobs=jobs,
        ),
        registry=registry,
        training=training,
        searches=SearchService(training, jobs=jobs),
        model_exports=ModelExporter(
            models_dir=settings.models_dir, exports_dir=settings.data_dir / "exports" / "models"
        ),
        explainer=explainer,
        fairness=FairnessService(models, FairnessData(db), explainer.target),
        drift=DriftMonitor(DriftData(db), embed=documents.embedder.embed, registry=registry),
        routing=router,
        retrievers=retrievers,
        knowledge=knowledge,
        knowledge_runs=knowledge_runs,
        knowledge_scores=Scores(knowledge_runs),
    )
    services.retraining = RetrainingService(
        RetrainingStore(db),
        datasets=datasets,
        training=training,
        registry=registry,
        evaluations=services.evaluations,
        arena=services.arena,
        experiments=experiments,
        jobs=jobs,
    )
    services.retraining.resume_if_needed()
    services.dashboard = DashboardService(
        DashboardQueries(db),
        base_model=settings.model,
        documents=documents,
        registry=registry,
        training=training,
        experiments=experiments,
        retraining=services.retraining,
        drift=services.drift,
        knowledge=services.knowledge_scores,
    )
    jobs.cancellers.update({
        TRAINING: training.stop, SEARCH: services.searches.stop,
        EVALUATION: services.evaluations.cancel, DATASET: services.dataset_jobs.cancel,
        KNOWLEDGE: knowledge_runs.cancel, RETRAINING: services.retraining.cancel,
    })
    return services
