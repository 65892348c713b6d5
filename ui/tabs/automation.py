"""Automation tab: the retraining policy, a check on request, cycles, the log, blind review."""

from __future__ import annotations

import json
from dataclasses import replace

import gradio as gr
import pandas as pd

from core.errors import InvalidInput
from core.operations.retraining import FOLLOW_UPS, RetrainingPolicy
from core.services import Services
from ui.errors import problem, shows_errors
from ui.identity import user_name
from ui.readable import frame

VOTES = {"⬅️ Left is better": "left", "Right is better ➡️": "right", "🤝 Tie": "tie",
         "👎 Both bad": "both_bad"}
CYCLE_COLUMNS = ["created_at", "state", "model_id", "incumbent", "follow_up", "evidence", "reason"]


def policy_values(policy: RetrainingPolicy) -> list:
    return [policy.enabled, policy.min_new_examples, policy.min_interval_hours,
            policy.min_rating, ", ".join(policy.selection.tags), policy.selection.label or "",
            policy.follow_up, policy.comparison_prompts, policy.experiment_rated_turns,
            policy.experiment_split, policy.eval_items, policy.max_new_tokens,
            json.dumps(policy.training, indent=1)]


def make_policy(current: RetrainingPolicy, enabled, min_new, interval, min_rating, tags, label,
                follow_up, prompts, rated_turns, split, eval_items, max_new, training_json):
    try:
        training = json.loads(training_json or "{}")
    except json.JSONDecodeError as error:
        raise InvalidInput(f"training options are not valid JSON: {error}") from error
    if not isinstance(training, dict):
        raise InvalidInput('training options must be a JSON object, e.g. {"epochs": 1}')
    selection = replace(current.selection, label=(label or "").strip() or None,
                        tags=tuple(t.strip() for t in (tags or "").split(",") if t.strip()))
    return replace(current, enabled=bool(enabled), min_new_examples=int(min_new),
                   min_interval_hours=float(interval), min_rating=int(min_rating),
                   selection=selection, follow_up=follow_up, comparison_prompts=int(prompts),
                   experiment_rated_turns=int(rated_turns), experiment_split=float(split),
                   eval_items=int(eval_items), max_new_tokens=int(max_new), training=training)


def state_views(services: Services):
    retraining = services.retraining
    policy = retraining.policy()
    new = len(retraining.new_example_ids(policy))
    _, reason = retraining.decide(pd.Timestamp.now().to_pydatetime(), manual=not policy.enabled)
    status = (f"**Automated retraining is {'on' if policy.enabled else 'off'}.** "
              f"{new} new curated example(s) not yet used; {policy.min_new_examples} start a run. "
              f"Next check: {reason}.")
    cycles = [{**c.__dict__, "evidence": retraining.evidence(c)} for c in retraining.cycles()]
    actions = retraining.actions(limit=100)
    return (status, frame(cycles, CYCLE_COLUMNS, ids=("model_id", "incumbent")),
            frame(actions, ["created_at", "action", "reason", "cycle_id"], ids=("cycle_id",)))


def build_automation_tab(services: Services, page: gr.Blocks, user: gr.Textbox) -> None:
    """`page` is the whole app: the policy form fills itself in when the page loads."""
    retraining = services.retraining

    with gr.Tab("Automation", id="automation"):
        gr.Markdown("When enough new curated examples arrive, build a dataset, continue the "
                    "promoted adapter on it, evaluate it against the promoted model, and open a "
                    "blind comparison or a live A/B experiment. Nothing is promoted "
                    "automatically: promotion needs the evidence gate in the Compare tab.")
        with gr.Accordion("Policy", open=True):
            with gr.Row():
                enabled = gr.Checkbox(label="On")
                min_new = gr.Number(label="New curated examples needed", precision=0, minimum=1)
                interval = gr.Number(label="At most once every (hours)", minimum=0)
                min_rating = gr.Slider(1, 5, step=1, label="Min stars (answers without a "
                                                           "correction)")
            with gr.Row():
                tags = gr.Textbox(label="Only ratings tagged (comma-separated; empty: any)")
                label = gr.Textbox(label="Only turns labelled (empty: any)")
                follow_up = gr.Radio(list(FOLLOW_UPS), label="Then open",
                                     info="blind: blind comparisons to vote on; experiment: "
                                          "a live A/B test in chat")
            with gr.Row():
                prompts = gr.Number(label="Blind comparisons", precision=0, minimum=1)
                rated_turns = gr.Number(label="Experiment: rated turns", precision=0, minimum=2)
                split = gr.Slider(0.05, 0.95, step=0.05, label="Experiment: share on new model")
                eval_items = gr.Number(label="Held-out examples evaluated", precision=0)
                max_new = gr.Number(label="Max new tokens per answer", precision=0)
            training = gr.Code(language="json", label="Training options over the preset "
                                                      "(e.g. {\"epochs\": 1})", lines=3)
            with gr.Row():
                save = gr.Button("Save policy", variant="primary")
                run = gr.Button("Run a check now")
                refresh = gr.Button("Refresh")
                cancel = gr.Button("Cancel the open cycle", variant="stop")
        message = gr.Markdown()
        status = gr.Markdown()
        cycles = gr.Dataframe(label="Cycles", interactive=False, wrap=True, max_height=300)
        actions = gr.Dataframe(label="Action log (newest first)", interactive=False, wrap=True,
                               max_height=400)
        with gr.Accordion("Blind review of the automation's comparisons", open=False):
            current = gr.State(None)
            next_pair = gr.Button("Next pair to vote on")
            prompt = gr.Textbox(label="Prompt", interactive=False)
            with gr.Row():
                left = gr.Textbox(label="Left", interactive=False, lines=6)
                right = gr.Textbox(label="Right", interactive=False, lines=6)
            with gr.Row():
                vote_buttons = [gr.Button(name) for name in VOTES]
            verdict = gr.Markdown()
        timer = gr.Timer(15)

    fields = [enabled, min_new, interval, min_rating, tags, label, follow_up, prompts,
              rated_turns, split, eval_items, max_new, training]
    views = [status, cycles, actions]

    def load():
        return (*policy_values(retraining.policy()), *state_views(services))

    @shows_errors(lambda m: (problem(m), *state_views(services)))
    def save_policy(request: gr.Request, name, *values):
        policy = make_policy(retraining.policy(), *values)
        retraining.set_policy(policy, user=user_name(name, request))
        return ("Saved.", *state_views(services))

    @shows_errors(lambda m: (problem(m), *state_views(services)))
    def check_now(request: gr.Request, name):
        outcome = retraining.run_now(pd.Timestamp.now().to_pydatetime(),
                                     user=user_name(name, request))
        verb = "Started a cycle" if outcome["started"] else "No cycle started"
        return (f"{verb}: {outcome['reason']}", *state_views(services))

    @shows_errors(lambda m: (problem(m), *state_views(services)))
    def cancel_cycle():
        cycle = retraining.open_cycle()
        if cycle is None:
            return ("No cycle is open.", *state_views(services))
        cycle = retraining.cancel(cycle.id)
        return (f"Cycle {cycle.id[:8]} {cycle.error}; its examples count as new again.",
                *state_views(services))

    def show_next(request: gr.Request, name):
        pair = retraining.next_blind_pair(user_name(name, request))
        if pair is None:
            return None, "", "", "", "Nothing left to vote on."
        return pair["comparison_id"], pair["prompt"], pair["left"], pair["right"], ""

    def vote(choice):
        @shows_errors(problem)
        def handler(request: gr.Request, comparison_id, name):
            if not comparison_id:
                return "⚠️ load a pair first"
            record = services.arena.vote(comparison_id, choice,
                                         voter=user_name(name, request))
            return (f"Thanks. Left was **{record.left_model}**, right was "
                    f"**{record.right_model}**. Click *Next pair* to continue.")
        return handler

    page.load(load, None, [*fields, *views])
    refresh.click(load, None, [*fields, *views])
    save.click(save_policy, [user, *fields], [message, *views])
    run.click(check_now, user, [message, *views])
    cancel.click(cancel_cycle, None, [message, *views])
    timer.tick(lambda: state_views(services), None, views, show_progress="hidden")
    next_pair.click(show_next, user, [current, prompt, left, right, verdict])
    for button, choice in zip(vote_buttons, VOTES.values(), strict=True):
        button.click(vote(choice), [current, user], verdict)
