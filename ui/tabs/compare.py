"""Compare tab: two models side by side, per-side ratings, blind votes, results and promotion."""

from __future__ import annotations

import threading

import gradio as gr
import pandas as pd

from core.comparison.arena import CompareRequest
from core.documents.grounding import mark_citations
from core.feedback.ratings import Feedback
from core.services import Services
from core.serving.generation import GenerationOptions
from ui.charts import leaderboard_figure, win_rate_figure
from ui.errors import problem, shows_errors
from ui.identity import user_name
from ui.live import Live
from ui.markup import as_text, short_id, short_model, sources_markdown
from ui.scores import scores_markdown

STARS = ["1", "2", "3", "4", "5"]
VOTES = {"⬅️ Left is better": "left", "Right is better ➡️": "right", "🤝 Tie": "tie",
         "👎 Both bad": "both_bad"}
PAIR_COLUMNS = ["pair", "verdict", "win rate of A (95% CI)", "A wins", "B wins", "ties",
                "both bad", "p-value"]
BOARD_COLUMNS = ["model", "rating (95% CI)", "games", "status"]
HOW_TO_READ = (
    "How to read these: the win rate of A counts wins and losses only (ties and both-bad are "
    "shown but left out); its 95% interval is Wilson's with continuity correction, so a handful "
    "of votes gives a wide interval. p is an exact two-sided sign test. A pair or model is "
    "**not enough votes yet** until it has the minimum below (ties count, both-bad do not). "
    "The leaderboard is Bradley-Terry with a weak prior; its interval comes from the fit's "
    "curvature and narrows as games add up."
)


def side_metrics(turn) -> str:
    confidence = "n/a" if turn.confidence is None else f"{turn.confidence:.2f}"
    ttft = "n/a" if turn.ttft_ms is None else f"{turn.ttft_ms:.0f} ms"
    return (f"{turn.latency_ms / 1000:.1f} s · first token {ttft} · {turn.completion_tokens} "
            f"tokens · {turn.tokens_per_s:.1f} tokens/s · confidence {confidence}")


def model_label(services: Services, spec: str) -> str:
    """A short name for a compared model: an adapter's registered name before its id."""
    entry = services.registry.find(spec) if spec else None
    if entry is not None and entry.name and entry.name != spec:
        return f"{entry.name} ({short_id(spec)})"
    return short_id(spec)


def pair_rows(services: Services, pairs: list[dict]) -> pd.DataFrame:
    rows = []
    for p in pairs:
        rate = "–" if p["win_rate_a"] is None else (
            f"{p['win_rate_a']:.2f} ({p['ci_low']:.2f}–{p['ci_high']:.2f})")
        rows.append({
            "pair": f"A {model_label(services, p['model_a'])} vs B "
                    f"{model_label(services, p['model_b'])}",
            "verdict": p["verdict"],
            "win rate of A (95% CI)": rate,
            "A wins": p["wins_a"], "B wins": p["wins_b"], "ties": p["ties"],
            "both bad": p["both_bad"],
            "p-value": "–" if p["p_value"] is None else f"{p['p_value']:.2g}",
        })
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def board_rows(services: Services, ratings: list[dict]) -> pd.DataFrame:
    needed = services.arena.min_votes
    rows = [{
        "model": model_label(services, r["model"]),
        "rating (95% CI)": f"{r['score']:+.2f} ({r['low']:+.2f} to {r['high']:+.2f})",
        "games": r["games"],
        "status": "ranked" if r["enough"] else f"not enough votes yet ({r['games']} of {needed})",
    } for r in ratings]
    return pd.DataFrame(rows, columns=BOARD_COLUMNS)


def results(services: Services):
    pairs = [pair.to_dict() for pair in services.arena.pairs()]
    ratings = services.arena.leaderboard()
    named = [{**p, "model_a": model_label(services, p["model_a"]),
              "model_b": model_label(services, p["model_b"])} for p in pairs]
    board = [{**r, "model": model_label(services, r["model"])} for r in ratings]
    return (pair_rows(services, pairs), win_rate_figure(named) if pairs else None,
            board_rows(services, ratings), leaderboard_figure(board) if ratings else None)


RESET = (None, None, "", None, None, "")  # each side's stars, thumb and saved note
BLANK = ("", "", "", "", "### Left", "### Right")


def answer_card(text: str, sources) -> str:
    """An answer as wrapped Markdown text, with [n] markers when it was grounded."""
    return as_text(mark_citations(text, sources) if sources else text)


def knowledge_line(services: Services, live: Live, model_a, model_b) -> None:
    """Read-only: what each side knows of the team's facts (latest knowledge check runs)."""

    @shows_errors(problem)
    def line(a, b):
        known = [m for m in dict.fromkeys((a, b)) if m and m != "base+fewshot"]
        return scores_markdown(services, known)

    view = gr.Markdown(line(model_a.value, model_b.value))
    model_a.change(line, [model_a, model_b], view)
    model_b.change(line, [model_a, model_b], view)
    live.on_change(line, [model_a, model_b], view)  # a knowledge run finished elsewhere


def build_compare_tab(services: Services, live: Live, user: gr.Textbox) -> None:
    stops: dict[str, threading.Event] = {}
    choices = services.arena.resolver.choices

    with gr.Tab("Compare", id="compare"):
        state = gr.State(dict)
        with gr.Row():
            model_a = gr.Dropdown(choices(), value="base", label="Model A", allow_custom_value=True)
            model_b = gr.Dropdown(choices(), value="base+fewshot", label="Model B",
                                  allow_custom_value=True)
            blind = gr.Checkbox(True, label="Blind (hide which side is which until you vote)")
            refresh = gr.Button("↻ Models", scale=0)
        knowledge_line(services, live, model_a, model_b)
        prompt = gr.Textbox(label="Prompt", lines=2, placeholder="One prompt, two answers")
        system = gr.Textbox(label="System prompt (optional; both sides, as in Chat)", lines=1)
        with gr.Row():
            run = gr.Button("Compare", variant="primary")
            stop = gr.Button("Stop", variant="stop")
            max_new = gr.Slider(1, services.settings.max_new_tokens_limit,
                                value=services.settings.default_max_new_tokens, step=1,
                                label="Max new tokens")
            temperature = gr.Slider(0.0, 2.0, value=0.0, step=0.05, label="Temperature")
            ground = gr.Checkbox(label="Ground on documents (as Chat does)", value=False)
        status = gr.Markdown()
        sides = {}
        with gr.Row():
            for side in ("left", "right"):
                with gr.Column():
                    title = gr.Markdown(f"### {side.title()}")
                    answer = gr.Markdown(label="Answer", show_label=True, container=True,
                                         line_breaks=True, min_height=160,
                                         elem_id=f"compare-{side}-answer")
                    metrics = gr.Markdown()
                    with gr.Row():
                        stars = gr.Radio(STARS, label="Stars")
                        thumb = gr.Radio(["up", "down"], label="Thumb")
                    save = gr.Button(f"Rate {side} answer")
                    saved = gr.Markdown()
                    sides[side] = (title, answer, metrics, stars, thumb, save, saved)
        cited = gr.Markdown(label="Sources (both answers)", container=True, visible=False,
                            elem_id="compare-sources")
        with gr.Row():
            vote_buttons = [gr.Button(label) for label in VOTES]
        with gr.Accordion("Results, leaderboard and promotion", open=False):
            show = gr.Button("↻ Update results")
            gr.Markdown(HOW_TO_READ)
            pair_table = gr.Dataframe(label="Pairs", wrap=True)
            pair_chart = gr.Plot(label="Win rates")
            board = gr.Dataframe(label="Leaderboard (Bradley-Terry)", wrap=True)
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

    @shows_errors(lambda m: (*BLANK, problem(m), {}, gr.update(), *RESET))
    def compare(a, b, is_blind, name, text, tokens, temp, grounded, system_text,
                request: gr.Request):
        ask = CompareRequest(prompt=text, model_a=a or "", model_b=b or "", blind=is_blind,
                             user=user_name(name, request), use_documents=bool(grounded),
                             system_prompt=(system_text or "").strip() or None,
                             options=GenerationOptions(max_new_tokens=int(tokens),
                                                       temperature=float(temp)))
        stop_event = stops[request.session_hash] = threading.Event()
        texts, info = {"left": "", "right": ""}, {"left": "", "right": ""}
        titles = (["### Left", "### Right"] if is_blind else
                  [f"### {as_text(model_label(services, m or ''))}" for m in (a, b)])
        hidden = gr.update(value="", visible=False)
        yield *texts.values(), *info.values(), *titles, "_Generating…_", {}, hidden, *RESET
        for update in services.arena.stream(ask, stop_event=stop_event):
            texts[update.side] = as_text(update.text)
            if update.turn is not None:
                info[update.side] = side_metrics(update.turn)
            if update.comparison is None:
                yield (*texts.values(), *info.values(), *titles, "_Generating…_", {},
                       gr.update(), *RESET)
        record = update.comparison
        for side in texts:
            turn = services.feedback.turn(getattr(record, f"{side}_interaction_id"))
            texts[side] = answer_card(turn["response"], update.sources)
        done = {"id": record.id, "left": record.left_interaction_id,
                "right": record.right_interaction_id, "blind": record.blind}
        note = "Vote below" + ("; the names are revealed after your vote." if record.blind else ".")
        sources = gr.update(
            value=sources_markdown("**Sources both answers were given**", update.sources),
            visible=bool(update.sources),
        )
        yield *texts.values(), *info.values(), *titles, note, done, sources, *RESET

    def stop_generation(request: gr.Request):
        if event := stops.get(request.session_hash):
            event.set()

    def rate(side):
        @shows_errors(problem)
        def handler(current, name, star, thumb_value, request: gr.Request):
            if not current:
                return "⚠️ Compare first."
            rater = user_name(name, request)
            services.feedback.rate(Feedback(response_id=current[side], user=rater,
                                            rating=int(star) if star else None,
                                            thumb=thumb_value or None))
            return "✅ Saved (joins the feedback log)."
        return handler

    def vote(label):
        @shows_errors(lambda m: (problem(m), gr.update(), gr.update()))
        def handler(current, name, request: gr.Request):
            if not current:
                return "⚠️ Compare first.", gr.update(), gr.update()
            voter = user_name(name, request)
            record = services.arena.vote(current["id"], VOTES[label], voter=voter)
            left, right = (model_label(services, m) for m in (record.left_model,
                                                               record.right_model))
            return (f"✅ Vote saved: **{VOTES[label]}**. Left was **{as_text(left)}** "
                    f"(`{short_model(record.left_version)}`), right was **{as_text(right)}** "
                    f"(`{short_model(record.right_version)}`).",
                    f"### Left: {as_text(left)}", f"### Right: {as_text(right)}")
        return handler

    @shows_errors(lambda m: (problem(m), gr.update(interactive=False)))
    def evidence(who, against, a_level, votes_needed):
        gate = services.arena.gate(who or "", against or "", alpha=float(a_level),
                                   min_votes=int(votes_needed))
        mark = "✅" if gate.allowed else "⛔"
        return f"{mark} {gate.reason}", gr.update(interactive=gate.allowed)

    @shows_errors(lambda m: (problem(m), gr.update(interactive=False), history()))
    def do_promote(who, against, a_level, votes_needed, name, request: gr.Request):
        services.arena.promote(who or "", against or "",
                               user=user_name(name, request),
                               alpha=float(a_level), min_votes=int(votes_needed))
        message = f"✅ Promoted **{who}**: the Chat tab now serves it."
        return message, gr.update(interactive=False), history()

    @shows_errors(lambda m: (problem(m), history()))
    def do_rollback(name, request: gr.Request):
        row = services.arena.rollback(user=user_name(name, request))
        message = f"↩️ Rolled back **{row['previous']}**; now serving **{row['model']}**."
        return message, history()

    def history():
        rows = [{"when": f"{row['created_at']:%Y-%m-%d %H:%M}", "action": row["action"],
                 "model": model_label(services, row["model"] or ""),
                 "previous": model_label(services, row["previous"] or ""), "by": row["user_id"]}
                for row in services.arena.history()]
        return pd.DataFrame(rows, columns=["when", "action", "model", "previous", "by"])

    def reload_models():
        names = choices()
        return (gr.update(choices=names), gr.update(choices=names), gr.update(choices=names),
                gr.update(choices=names))

    left, right = sides["left"], sides["right"]
    ratings = [*left[3:5], left[6], *right[3:5], right[6]]
    outputs = [left[1], right[1], left[2], right[2], left[0], right[0], status, state, cited,
               *ratings]
    inputs = [model_a, model_b, blind, user, prompt, max_new, temperature, ground, system]
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
    live.on_change(reload_models, None, [model_a, model_b, challenger, incumbent])
