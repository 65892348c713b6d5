"""The studio's page: the loop's stages left to right, each a tab with its own sub-tabs, a
header with the user's name, and one poll that keeps every list current."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from core.services import Services
from ui.identity import Identity
from ui.live import Live
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
from ui.tabs.start import build_start_tab
from ui.tabs.train import build_train_tab
from ui.tabs.tune import build_tune_tab

TITLE = "Refinery"
STYLE = Path(__file__).with_name("style.css")
# A chart drawn while its tab was hidden has no size; a resize makes Plotly lay it out again.
HEAD = """<script>
document.addEventListener("click", (event) => {
  if (event.target.closest("[role=tab]")) {
    setTimeout(() => window.dispatchEvent(new Event("resize")), 100);
  }
});
</script>"""
# The Start page's next step (core/operations/loop_state.py) -> (stage tab id, sub-tab id or None).
STEP_TABS = {"documents": ("documents", None), "chat": ("chat", None),
             "datasets": ("stage-curate", "datasets"), "train": ("stage-train", "train"),
             "compare": ("stage-compare", "compare"), "audit": ("stage-audit", "explain")}


def build_app(services: Services) -> gr.Blocks:
    with gr.Blocks(title=TITLE) as blocks:
        with gr.Row(equal_height=True):
            gr.Markdown(f"# {TITLE}\nServing **{services.models.name}**. Upload documents, "
                        "chat and rate, curate a dataset, train an adapter, compare, audit, "
                        "promote.")
            identity = Identity()
        live = Live(services)
        user = identity.box
        stages: dict[str, gr.Tabs] = {}
        with gr.Tabs() as top:
            go, step = build_start_tab(services, live, blocks)
            build_documents_tab(services, live)
            build_chat_tab(services, user)
            with gr.Tab("Curate", id="stage-curate"), gr.Tabs() as stages["stage-curate"]:
                selection = build_feedback_tab(services, live, user)
                build_datasets_tab(services, live, selection)
                build_logs_tab(services, live)
            with gr.Tab("Training", id="stage-train"), gr.Tabs() as stages["stage-train"]:
                build_train_tab(services, live, user)
                build_tune_tab(services, live, user)
                build_retriever_tab(services, live, user)
            with gr.Tab("Compare & evaluate", id="stage-compare"), \
                    gr.Tabs() as stages["stage-compare"]:
                build_compare_tab(services, live, user)
                build_evaluate_tab(services, live)
                build_knowledge_tab(services, live)
            with gr.Tab("Audit", id="stage-audit"), gr.Tabs() as stages["stage-audit"]:
                build_explain_tab(services, live)
                build_fairness_tab(services, blocks, live)
                build_monitor_tab(services)
            with gr.Tab("Operate", id="stage-operate"), gr.Tabs() as stages["stage-operate"]:
                build_models_tab(services, live, user)
                build_routing_tab(services)
                build_automation_tab(services, blocks, user)
                build_dashboard_tab(services, blocks)
        identity.wire(blocks)

        def open_step(key: str):
            stage, sub = STEP_TABS.get(key, ("start", None))
            return gr.Tabs(selected=stage), *(
                gr.Tabs(selected=sub) if name == stage and sub else gr.skip()
                for name in stages)

        go.click(open_step, step, [top, *stages.values()])
    return blocks
