"""The studio's page: one tab per concept, each built by its own module."""

from __future__ import annotations

import gradio as gr

from core.services import Services
from ui.tabs.automation import build_automation_tab
from ui.tabs.chat import build_chat_tab
from ui.tabs.compare import build_compare_tab
from ui.tabs.dashboard import build_dashboard_tab
from ui.tabs.datasets import build_datasets_tab
from ui.tabs.documents import build_documents_tab
from ui.tabs.evaluate import build_evaluate_tab
from ui.tabs.explain import build_explain_tab
from ui.tabs.fairness import build_fairness_tab
from ui.tabs.feedback import build_feedback_tab
from ui.tabs.knowledge import build_knowledge_tab
from ui.tabs.logs import build_logs_tab
from ui.tabs.models import build_models_tab
from ui.tabs.monitor import build_monitor_tab
from ui.tabs.retriever import build_retriever_tab
from ui.tabs.routing import build_routing_tab
from ui.tabs.train import build_train_tab
from ui.tabs.tune import build_tune_tab

TITLE = "Refinery"


def build_app(services: Services) -> gr.Blocks:
    with gr.Blocks(title=TITLE) as blocks:
        gr.Markdown(
            f"# {TITLE}\nServing **{services.models.name}**. The loop: upload documents, chat "
            "and rate, curate feedback into datasets, train a LoRA adapter, compare and vote, "
            "then explain and audit before promoting."
        )
        with gr.Tabs():
            build_dashboard_tab(services, blocks)
            build_chat_tab(services)
            build_documents_tab(services)
            build_logs_tab(services)
            selection = build_feedback_tab(services)
            build_datasets_tab(services, selection)
            build_train_tab(services)
            build_tune_tab(services)
            build_retriever_tab(services)
            build_models_tab(services)
            build_routing_tab(services)
            build_compare_tab(services)
            build_automation_tab(services, blocks)
            build_monitor_tab(services)
            build_evaluate_tab(services)
            build_knowledge_tab(services)
            build_explain_tab(services)
            build_fairness_tab(services)
    return blocks
