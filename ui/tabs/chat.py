"""Chat tab: streaming multi-turn chat with generation settings and per-answer ratings."""

from __future__ import annotations

import threading
import uuid

import gradio as gr

from core.auth import session_user
from core.chat import ChatRequest
from core.errors import RefineryError
from core.feedback import Feedback, parse_tags
from core.generation import GenerationOptions
from core.grounding import citations
from core.services import Services
from ui.markup import as_text, as_text_messages

STARS = ["1", "2", "3", "4", "5"]


def new_conversation() -> dict:
    """Per-browser-session state: the turns so far and which chatbot row is which logged answer."""
    return {"id": uuid.uuid4().hex, "messages": [], "reply_ids": {}, "selected": None}


def metrics_line(turn, notice: str | None) -> str:
    confidence = "n/a" if turn.confidence is None else f"{turn.confidence:.2f}"
    ttft = "n/a" if turn.ttft_ms is None else f"{turn.ttft_ms:.0f} ms"
    shown_route = (turn.route or "").replace("`", "'")  # a code span: patterns stay as typed
    route = f" (route: `{shown_route}`)" if turn.route else ""
    line = (
        f"answered by **{turn.model_id}**"
        f"{f' + {turn.adapter_version}' if turn.adapter_version else ''}{route}"
        f" · {turn.latency_ms / 1000:.1f} s · first token {ttft} · "
        f"{turn.completion_tokens} tokens · {turn.tokens_per_s:.1f} tokens/s · "
        f"confidence {confidence} · {turn.finish_reason}"
    )
    return f"{line}\n\n⚠️ {notice}" if notice else line


def selected_label(conv: dict) -> str:
    index = conv["selected"]
    if index is None:
        return "Send a message, then rate its answer here (click an answer to pick another)."
    text = conv["messages"][index]["content"].replace("\n", " ")
    shown = as_text(text[:90].replace("`", "'"))  # model text, shown as text
    return f"Rating answer #{index // 2 + 1}: _{shown}{'…' if len(text) > 90 else ''}_"


def model_choices(services: Services) -> list[tuple[str, str]]:
    adapters = [(f"{m.name} ({m.id})", m.id) for m in services.registry.list()]
    return [("auto (route)", ""), (f"base: {services.models.name}", "base"), *adapters]


def build_chat_tab(services: Services) -> None:
    stops: dict[str, threading.Event] = {}

    with gr.Tab("Chat", id="chat"):
        conv = gr.State(new_conversation)
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(
                    label="Conversation",
                    height=460,
                    sanitize_html=True,
                    feedback_options=("Like", "Dislike"),
                    placeholder="Ask the model anything. Enter sends; Shift+Enter adds a line.",
                )
                prompt = gr.Textbox(
                    label="Message",
                    placeholder="Type a message and press Enter",
                    lines=1,
                    max_lines=8,
                    autofocus=True,
                )
                with gr.Row():
                    send = gr.Button("Send", variant="primary")
                    stop = gr.Button("Stop", variant="stop")
                    clear = gr.Button("New chat")
                metrics = gr.Markdown()
                cited = gr.Textbox(label="Cited sources", lines=2, interactive=False)
            with gr.Column(scale=1):
                user = gr.Textbox(label="Your name (rater)", value="anonymous")
                model_choice = gr.Dropdown(
                    model_choices(services), value="",
                    label="Model (auto: a matching route, else the promoted one)",
                )
                system_prompt = gr.Textbox(label="System prompt", lines=3)
                max_new_tokens = gr.Slider(
                    1,
                    services.settings.max_new_tokens_limit,
                    value=services.settings.default_max_new_tokens,
                    step=1,
                    label="Max new tokens",
                )
                temperature = gr.Slider(
                    0.0, 2.0, value=0.3, step=0.05, label="Temperature (0 = greedy)"
                )
                top_p = gr.Slider(0.05, 1.0, value=0.9, step=0.05, label="Top-p")
                penalty = gr.Slider(
                    1.0, 2.0, value=GenerationOptions.repetition_penalty, step=0.05,
                    label="Repetition penalty (1 = off)",
                )
                stop_loops = gr.Checkbox(label="Stop an answer that repeats itself", value=True)
                ground = gr.Checkbox(label="Ground on documents", value=False)
        with gr.Accordion("Rate an answer", open=True):
            target = gr.Markdown(selected_label(new_conversation()))
            with gr.Row():
                stars = gr.Radio(STARS, label="Stars", scale=2)
                thumb = gr.Radio(["up", "down"], label="Thumb", scale=1)
                tags = gr.Textbox(label="Tags (comma-separated)", scale=2)
            correction = gr.Textbox(label="Corrected answer (optional)", lines=3)
            save = gr.Button("Save rating")
            rating_status = gr.Markdown()

    def respond(
        text, conv, system, max_new, temp, top, rater, model, grounded, penalty, stop_loops,
        request: gr.Request,
    ):
        messages = conv["messages"]
        conv["sources"] = ""
        try:
            chat_request = ChatRequest(
                prompt=text,
                history=messages,
                system_prompt=system or None,
                options=GenerationOptions(
                    max_new_tokens=int(max_new), temperature=float(temp), top_p=float(top),
                    repetition_penalty=float(penalty),
                    repeat_ngram_limit=GenerationOptions.repeat_ngram_limit if stop_loops else 0,
                ),
                conversation_id=conv["id"],
                user=session_user(request.username, rater),
                model=model or None,
                use_documents=bool(grounded),
            )
            stop_event = stops[request.session_hash] = threading.Event()
            shown = [
                *messages,
                {"role": "user", "content": text},
                {"role": "assistant", "content": ""},
            ]
            yield as_text_messages(shown), "", "_Generating…_", conv, gr.update()
            for update in services.chat.stream(chat_request, stop_event=stop_event):
                shown[-1]["content"] = update.text
                if update.turn is None:
                    yield as_text_messages(shown), "", "_Generating…_", conv, gr.update()
        except RefineryError as error:
            yield as_text_messages(messages), text, f"⚠️ {as_text(error.message)}", conv, gr.update()
            return
        conv["messages"] = shown
        conv["reply_ids"][len(shown) - 1] = update.turn.id
        conv["selected"] = len(shown) - 1
        conv["sources"] = citations(update.sources)
        yield (
            as_text_messages(shown), "", metrics_line(update.turn, update.notice), conv,
            selected_label(conv),
        )

    def stop_generation(request: gr.Request):
        if event := stops.get(request.session_hash):
            event.set()

    def restart():
        fresh = new_conversation()
        return [], "", fresh, selected_label(fresh), None, None, "", "", ""

    def pick(conv, rater, data: gr.SelectData, request: gr.Request):
        index = data.index if isinstance(data.index, int) else data.index[0]
        if index not in conv["reply_ids"]:
            return conv, gr.update(), gr.update(), gr.update(), gr.update(), gr.update()
        conv["selected"] = index
        old = services.log.get_rating(
            conv["reply_ids"][index], session_user(request.username, rater)
        )
        if old is None:
            return conv, selected_label(conv), None, None, "", ""
        return (
            conv,
            selected_label(conv),
            str(old.rating) if old.rating else None,
            old.thumb,
            ", ".join(old.tags or []),
            old.correction or "",
        )

    def store(conv, rater, **fields) -> str:
        index = conv["selected"]
        if index is None:
            return "⚠️ There is no answer to rate yet."
        try:
            services.feedback.rate(
                Feedback(response_id=conv["reply_ids"][index], user=rater, **fields)
            )
        except RefineryError as error:
            return f"⚠️ {as_text(error.message)}"
        return f"✅ Saved for answer #{index // 2 + 1}."

    def save_rating(
        conv, rater, star, thumb_value, tag_text, correction_text, request: gr.Request
    ):
        return store(
            conv,
            session_user(request.username, rater),
            rating=int(star) if star else None,
            thumb=thumb_value or None,
            tags=parse_tags(tag_text or ""),
            correction=correction_text.strip() or None,
        )

    def like(conv, rater, data: gr.LikeData, request: gr.Request):
        index = data.index if isinstance(data.index, int) else data.index[0]
        if index not in conv["reply_ids"] or data.liked not in (True, False):
            return gr.update(), conv
        conv["selected"] = index
        liked = "up" if data.liked else "down"
        return store(conv, session_user(request.username, rater), thumb=liked), conv

    outputs = [chatbot, prompt, metrics, conv, target]
    inputs = [
        prompt, conv, system_prompt, max_new_tokens, temperature, top_p, user, model_choice, ground,
        penalty, stop_loops,
    ]
    model_choice.focus(lambda: gr.update(choices=model_choices(services)), None, model_choice)
    def show_sources(conv):
        return conv.get("sources", "")

    prompt.submit(respond, inputs, outputs).then(show_sources, conv, cited)
    send.click(respond, inputs, outputs).then(show_sources, conv, cited)
    stop.click(stop_generation, None, None, concurrency_limit=None)
    clear.click(lambda: "", None, cited)
    clear.click(
        restart,
        None,
        [chatbot, prompt, conv, target, stars, thumb, tags, correction, rating_status],
    )
    chatbot.select(pick, [conv, user], [conv, target, stars, thumb, tags, correction])
    chatbot.like(like, [conv, user], [rating_status, conv])
    save.click(save_rating, [conv, user, stars, thumb, tags, correction], rating_status)
