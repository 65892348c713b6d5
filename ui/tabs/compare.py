"""Compare tab: two models side by side, per-side ratings, blind votes, results and promotion."""

from __future__ import annotations

import threading
from dataclasses import asdict

import gradio as gr
import pandas as pd

from core.arena import CompareRequest
from core.auth import session_user
from core.errors import RefineryError
from core.feedback import Feedback
from core.generation import GenerationOptions
from core.services import Services
from ui.charts import leaderboard_figure, win_rate_figure
from ui.markup import as_text
from ui.tabs.knowledge import scores_markdown

STARS = ["1", "2", "3", "4", "5"]
VOTES = {"⬅️ Left is better": "left", "Right is better ➡️": "right", "🤝 Tie": "tie",
         "👎 Both bad": "both_bad"}
PAIR_COLUMNS = ["model_a", "model_b", "votes", "wins_a", "wins_b", "ties", "both_bad",
                "win_rate_a", "ci_low", "ci_high", "p_value"]


def side_metrics(turn) -> str:
    confidence = "n/a" if turn.confidence is None else f"{turn.confidence:.2f}"
    ttft = "n/a" if turn.ttft_ms is None else f"{turn.ttft_ms:.0f} ms"
    return (f"{turn.latency_ms / 1000:.1f} s · first token {ttft} · {turn.completion_tokens} "
            f"tokens · {turn.tokens_per_s:.1f} tokens/s · confidence {confidence}")


def results(services: Services):
    pairs = [pair.to_dict() for pair in services.arena.pairs()]
    ratings = [asdict(rating) for rating in services.arena.leaderboard()]
    pair_frame = pd.DataFrame(pairs, columns=PAIR_COLUMNS).round(4)
    board = pd.DataFrame(ratings, columns=["model", "score", "low", "high", "games"]).round(3)
    return (pair_frame, win_rate_figure(pairs) if pairs else None, board,
            leaderboard_figure(ratings) if ratings else None)


def knowledge_line(services: Services, model_a, model_b) -> None:
    """Read-only: what each side knows of the team's facts (latest knowledge check runs)."""

    def line(a, b):
        known = [m for m in dict.fromkeys((a, b)) if m and m != "base+fewshot"]
        try:
            return scores_markdown(services, known)
        except RefineryError as error:
            return f"⚠️ {error.message}"

    view = gr.Markdown(line(model_a.value, model_b.value))
    model_a.change(line, [model_a, model_b], view)
    model_b.change(line, [model_a, model_b], view)


def build_compare_tab(services: Services) -> None:
    stops: dict[str, threading.Event] = {}
    choices = services.arena.resolver.choices

    with gr.Tab("Compare", id="compare"):
        state = gr.State(dict)
        with gr.Row():
            model_a = gr.Dropdown(choices(), value="base", label="Model A", allow_custom_value=True)
            model_b = gr.Dropdown(choices(), value="base+fewshot", label="Model B",
                                  allow_custom_value=True)
            blind = gr.Checkbox(True, label="Blind (hide which side is which until you vote)")
            user = gr.Textbox("anonymous", label="Your name")
            refresh = gr.Button("↻ Models", scale=0)
        knowledge_line(services, model_a, model_b)
        prompt = gr.Textbox(label="Prompt", lines=2, placeholder="One prompt, two answers")
        with gr.Row():
            run = gr.Button("Compare", variant="primary")
            stop = gr.Button("Stop", variant="stop")
            max_new = gr.Slider(1, services.settings.max_new_tokens_limit,
                                value=services.settings.default_max_new_tokens, step=1,
                                label="Max new tokens")
            temperature = gr.Slider(0.0, 2.0, value=0.0, step=0.05, label="Temperature")
        status = gr.Markdown()
        sides = {}
        with gr.Row():
            for side in ("left", "right"):
                with gr.Column():
                    title = gr.Markdown(f"### {side.title()}")
                    answer = gr.Textbox(label="Answer", lines=8, interactive=False)
                    metrics = gr.Markdown()
                    with gr.Row():
                        stars = gr.Radio(STARS, label="Stars")
                        thumb = gr.Radio(["up", "down"], label="Thumb")
                    save = gr.Button(f"Rate {side} answer")
                    saved = gr.Markdown()
                    sides[side] = (title, answer, metrics, stars, thumb, save, saved)
        with gr.Row():
            vote_buttons = [gr.Button(label) for label in VOTES]
        with gr.Accordion("Results, leaderboard and promotion", open=False):
            show = gr.Button("↻ Update results")
            pair_table = gr.Dataframe(label="Pairs (win rate of model_a, ties excluded; "
                                      "Wilson 95% interval; exact sign test p-value)")
            pair_chart = gr.Plot(label="Win rates")
            board = gr.Dataframe(label="Leaderboard (Bradley-Terry, bootstrap 95% interval)")
            board_chart = gr.Plot(label="Ratings")
            with gr.Row():
                challenger = gr.Dropdown(choices(), label="Challenger", allow_custom_value=True)
                incumbent = gr.Dropdown(choices(), value="base", label="Incumbent",
                                        allow_custom_value=True)
                alpha = gr.Number(services.arena.alpha, label="alpha", minimum=0.0001,
                                  maximum=0.5)
                min_votes = gr.Number(services.arena.min_votes, label="Minimum votes",
                                      precision=0, minimum=1)
            gate_text = gr.Markdown()
            with gr.Row():
                check = gr.Button("Check evidence")
                promote = gr.Button("Promote", variant="primary", interactive=False)
                rollback = gr.Button("Roll back last promotion")
            log = gr.Dataframe(label="Promotions and rollbacks")

    def compare(a, b, is_blind, name, text, tokens, temp, request: gr.Request):
        blank = ("", "", "", "", "### Left", "### Right")
        try:
            ask = CompareRequest(prompt=text, model_a=a or "", model_b=b or "", blind=is_blind,
                                 user=session_user(request.username, name),
                                 options=GenerationOptions(max_new_tokens=int(tokens),
                                                           temperature=float(temp)))
            stop_event = stops[request.session_hash] = threading.Event()
            texts, info = {"left": "", "right": ""}, {"left": "", "right": ""}
            titles = (["### Left", "### Right"] if is_blind
                      else [f"### {as_text(a or '')}", f"### {as_text(b or '')}"])
            yield *texts.values(), *info.values(), *titles, "_Generating…_", {}
            for update in services.arena.stream(ask, stop_event=stop_event):
                texts[update.side] = update.text
                if update.turn is not None:
                    info[update.side] = side_metrics(update.turn)
                if update.comparison is None:
                    yield *texts.values(), *info.values(), *titles, "_Generating…_", {}
        except RefineryError as error:
            yield *blank, f"⚠️ {as_text(error.message)}", {}
            return
        record = update.comparison
        done = {"id": record.id, "left": record.left_interaction_id,
                "right": record.right_interaction_id, "blind": record.blind}
        note = "Vote below" + ("; the names are revealed after your vote." if record.blind else ".")
        yield *texts.values(), *info.values(), *titles, note, done

    def stop_generation(request: gr.Request):
        if event := stops.get(request.session_hash):
            event.set()

    def rate(side):
        def handler(current, name, star, thumb_value, request: gr.Request):
            if not current:
                return "⚠️ Compare first."
            try:
                rater = session_user(request.username, name)
                services.feedback.rate(Feedback(response_id=current[side], user=rater,
                                                rating=int(star) if star else None,
                                                thumb=thumb_value or None))
            except RefineryError as error:
                return f"⚠️ {as_text(error.message)}"
            return "✅ Saved (joins the feedback log)."
        return handler

    def vote(label):
        def handler(current, name, request: gr.Request):
            if not current:
                return "⚠️ Compare first.", gr.update(), gr.update()
            try:
                voter = session_user(request.username, name)
                record = services.arena.vote(current["id"], VOTES[label], voter=voter)
            except RefineryError as error:
                return f"⚠️ {as_text(error.message)}", gr.update(), gr.update()
            return (f"✅ Vote saved: **{VOTES[label]}**. Left was **{record.left_model}** "
                    f"(`{record.left_version}`), right was **{record.right_model}** "
                    f"(`{record.right_version}`).",
                    f"### Left: {record.left_model}", f"### Right: {record.right_model}")
        return handler

    def evidence(who, against, a_level, votes_needed):
        try:
            gate = services.arena.gate(who or "", against or "", alpha=float(a_level),
                                       min_votes=int(votes_needed))
        except RefineryError as error:
            return f"⚠️ {as_text(error.message)}", gr.update(interactive=False)
        mark = "✅" if gate.allowed else "⛔"
        return f"{mark} {gate.reason}", gr.update(interactive=gate.allowed)

    def do_promote(who, against, a_level, votes_needed, name, request: gr.Request):
        try:
            services.arena.promote(who or "", against or "",
                                   user=session_user(request.username, name),
                                   alpha=float(a_level), min_votes=int(votes_needed))
            message = f"✅ Promoted **{who}**: the Chat tab now serves it."
        except RefineryError as error:
            message = f"⚠️ {as_text(error.message)}"
        return message, gr.update(interactive=False), history()

    def do_rollback(name, request: gr.Request):
        try:
            row = services.arena.rollback(user=session_user(request.username, name))
            message = f"↩️ Rolled back **{row['previous']}**; now serving **{row['model']}**."
        except RefineryError as error:
            message = f"⚠️ {as_text(error.message)}"
        return message, history()

    def history():
        return pd.DataFrame(services.arena.history(),
                            columns=["created_at", "action", "model", "previous", "user_id"])

    def reload_models():
        names = choices()
        return (gr.update(choices=names), gr.update(choices=names), gr.update(choices=names),
                gr.update(choices=names))

    left, right = sides["left"], sides["right"]
    outputs = [left[1], right[1], left[2], right[2], left[0], right[0], status, state]
    inputs = [model_a, model_b, blind, user, prompt, max_new, temperature]
    run.click(compare, inputs, outputs)
    prompt.submit(compare, inputs, outputs)
    stop.click(stop_generation, None, None, concurrency_limit=None)
    for side, (_, _, _, stars, thumb, save, saved) in sides.items():
        save.click(rate(side), [state, user, stars, thumb], saved)
    for button, label in zip(vote_buttons, VOTES, strict=True):
        button.click(vote(label), [state, user], [status, left[0], right[0]])
    show.click(lambda: (*results(services), history()), None,
               [pair_table, pair_chart, board, board_chart, log])
    gate_inputs = [challenger, incumbent, alpha, min_votes]
    check.click(evidence, gate_inputs, [gate_text, promote])
    challenger.change(evidence, gate_inputs, [gate_text, promote])
    promote.click(do_promote, [*gate_inputs, user], [gate_text, promote, log])
    rollback.click(do_rollback, [user], [gate_text, log])
    refresh.click(reload_models, None, [model_a, model_b, challenger, incumbent])
