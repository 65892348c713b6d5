"""Chat tab: streaming multi-turn chat with generation settings and per-answer ratings."""

from __future__ import annotations

import threading
import uuid

import gradio as gr

from core.documents.grounding import mark_citations
from core.feedback.ratings import Feedback, parse_tags
from core.services import Services
from core.serving.chat import ChatRequest
from core.serving.generation import GenerationOptions
from ui.errors import problem, shows_errors
from ui.identity import user_name
from ui.markup import as_text, as_text_messages, short_id, short_model, sources_markdown

STARS = ["1", "2", "3", "4", "5"]
NO_SOURCES = "_Sources of the selected answer appear here when it was grounded on documents._"
WAITING = (gr.update(),) * 7  # the rating form stays until the answer exists


def new_conversation() -> dict:
    """Per-browser-session state: the turns so far, which chatbot row is which logged answer,
    and each answer's sources (by row)."""
    return {"id": uuid.uuid4().hex, "messages": [], "reply_ids": {}, "selected": None,
            "sources": {}}


def shown_messages(conv: dict, messages: list[dict] | None = None) -> list[dict]:
    """The chat as displayed: grounded answers carry [n] markers tied to their sources (the
    logged answer and the history sent to the model stay as the model wrote them)."""
    messages = conv["messages"] if messages is None else messages
    marked = [
        {**m, "content": mark_citations(m["content"], conv["sources"][i])}
        if conv["sources"].get(i) else m
        for i, m in enumerate(messages)
    ]
    return as_text_messages(marked)


def sources_text(conv: dict) -> str:
    index = conv["selected"]
    if index is None:
        return NO_SOURCES
    number = index // 2 + 1
    sources = conv["sources"].get(index)
    if not sources:
        return f"_Answer #{number} was not grounded on documents._"
    return sources_markdown(f"**Sources of answer #{number}**", sources)


def metrics_line(turn, notice: str | None) -> str:
    confidence = "n/a" if turn.confidence is None else f"{turn.confidence:.2f}"
    ttft = "n/a" if turn.ttft_ms is None else f"{turn.ttft_ms:.0f} ms"
    shown_route = (turn.route or "").replace("`", "'")  # a code span: patterns stay as typed
    route = f" (route: `{shown_route}`)" if turn.route else ""
    line = (
        f"answered by **{as_text(short_model(turn.model_id))}**"
        f"{f' + {short_id(turn.adapter_version)}' if turn.adapter_version else ''}{route}"
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


def build_chat_tab(services: Services, user: gr.Textbox) -> None:
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
                cited = gr.Markdown(NO_SOURCES, label="Cited sources", container=True,
                                    elem_id="chat-sources")
            with gr.Column(scale=1):
                model_choice = gr.Dropdown(
                    model_choices(services), value="",
                    label="Model (auto: a matching route, else the promoted one)",
                )
                system_prompt = gr.Textbox(label="System prompt", lines=3)
                defaults = services.defaults.get()  # the same defaults as the APIs
                max_new_tokens = gr.Slider(
                    1,
                    services.settings.max_new_tokens_limit,
                    value=defaults.max_new_tokens,
                    step=1,
                    label="Max new tokens",
                )
                temperature = gr.Slider(
                    0.0, 2.0, value=defaults.temperature, step=0.05,
                    label="Temperature (0 = greedy)",
                )
                top_p = gr.Slider(0.05, 1.0, value=defaults.top_p, step=0.05, label="Top-p")
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

    def form(conv, rater, status=""):
        """The rating form for the selected answer: its earlier rating by this user, else
        empty (never the previous answer's values), and that answer's sources."""
        index = conv["selected"]
        old = None
        if index is not None:
            old = services.feedback.rating(conv["reply_ids"][index], rater)
        return (
            selected_label(conv),
            str(old.rating) if old and old.rating else None,
            old.thumb if old else None,
            ", ".join(old.tags or []) if old else "",
            (old.correction or "") if old else "",
            status,
            sources_text(conv),
        )

    @shows_errors(lambda m, text, conv, *_: (shown_messages(conv), text, problem(m), conv,
                                              *WAITING), with_inputs=True)
    def respond(
        text, conv, system, max_new, temp, top, rater, model, grounded, penalty, stop_loops,
        request: gr.Request,
    ):
        messages = conv["messages"]
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
            user=user_name(rater, request),
            model=model or None,
            use_documents=bool(grounded),
        )
        stop_event = stops[request.session_hash] = threading.Event()
        shown = [
            *messages,
            {"role": "user", "content": text},
            {"role": "assistant", "content": ""},
        ]
        yield shown_messages(conv, shown), "", "_Generating…_", conv, *WAITING
        for update in services.chat.stream(chat_request, stop_event=stop_event):
            shown[-1]["content"] = update.text
            if update.turn is None:
                yield shown_messages(conv, shown), "", "_Generating…_", conv, *WAITING
        index = len(shown) - 1
        conv["messages"] = shown
        conv["reply_ids"][index] = update.turn.id
        conv["sources"][index] = list(update.sources)
        conv["selected"] = index
        yield (
            shown_messages(conv), "", metrics_line(update.turn, update.notice), conv,
            *form(conv, user_name(rater, request)),
        )

    def stop_generation(request: gr.Request):
        if event := stops.get(request.session_hash):
            event.set()

    def restart():
        fresh = new_conversation()
        return [], "", fresh, selected_label(fresh), None, None, "", "", "", NO_SOURCES

    def pick(conv, rater, data: gr.SelectData, request: gr.Request):
        index = data.index if isinstance(data.index, int) else data.index[0]
        if index not in conv["reply_ids"]:
            return conv, *(gr.update(),) * 7
        conv["selected"] = index
        return conv, *form(conv, user_name(rater, request))

    @shows_errors(problem)
    def store(conv, rater, **fields) -> str:
        index = conv["selected"]
        if index is None:
            return "⚠️ There is no answer to rate yet."
        services.feedback.rate(
            Feedback(response_id=conv["reply_ids"][index], user=rater, **fields)
        )
        return f"✅ Saved for answer #{index // 2 + 1}."

    def save_rating(
        conv, rater, star, thumb_value, tag_text, correction_text, request: gr.Request
    ):
        return store(
            conv,
            user_name(rater, request),
            rating=int(star) if star else None,
            thumb=thumb_value or None,
            tags=parse_tags(tag_text or ""),
            correction=correction_text.strip() or None,
        )

    def like(conv, rater, data: gr.LikeData, request: gr.Request):
        """A thumb on a reply saves at once and selects that reply, form and sources too."""
        index = data.index if isinstance(data.index, int) else data.index[0]
        if index not in conv["reply_ids"] or data.liked not in (True, False):
            return conv, *(gr.update(),) * 7
        conv["selected"] = index
        rater = user_name(rater, request)
        status = store(conv, rater, thumb="up" if data.liked else "down")
        return conv, *form(conv, rater, status)

    rating_form = [target, stars, thumb, tags, correction, rating_status, cited]
    outputs = [chatbot, prompt, metrics, conv, *rating_form]
    inputs = [
        prompt, conv, system_prompt, max_new_tokens, temperature, top_p, user, model_choice, ground,
        penalty, stop_loops,
    ]
    model_choice.focus(lambda: gr.update(choices=model_choices(services)), None, model_choice)
    prompt.submit(respond, inputs, outputs)
    send.click(respond, inputs, outputs)
    stop.click(stop_generation, None, None, concurrency_limit=None)
    clear.click(restart, None, [chatbot, prompt, conv, *rating_form])
    chatbot.select(pick, [conv, user], [conv, *rating_form])
    chatbot.like(like, [conv, user], [conv, *rating_form])
    save.click(save_rating, [conv, user, stars, thumb, tags, correction], rating_status)
