"""The Explain tab's feedback view: what the rated turns say users dislike."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from core.feedback.classifier import labelled_turns, train_feedback_model
from core.services import Services
from ui.charts import feedback_words_figure
from ui.errors import problem, shows_errors


def highlighted_weights(text: str, weights: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Each word of the turn with its LIME weight towards a thumbs down, scaled to [-1, 1]."""
    lookup = {word.lower(): value for word, value in weights}
    top = max((abs(v) for v in lookup.values()), default=0.0) or 1.0
    return [(w + " ", round(lookup.get(w.lower().strip(".,!?;:\"'()"), 0.0) / top, 3))
            for w in text.split()]


def build_feedback_model_view(services: Services) -> None:
    with gr.Accordion("Feedback classifier: what do users dislike?", open=False):
        gr.Markdown("A TF-IDF + logistic regression model trained on the rated turns to predict "
                    "a thumbs down (or 1-2 stars) from the prompt and answer text.")
        train = gr.Button("Train on the rated turns")
        result = gr.Markdown()
        figure = gr.Plot(label="Top words")
        words = gr.Dataframe(label="Top words (coefficient; mean |SHAP|)", interactive=False)
        with gr.Row():
            turn = gr.Dropdown([], label="Rated turn", scale=3)
            why = gr.Button("Why this rating?", scale=0)
        turn_info = gr.Markdown()
        turn_text = gr.HighlightedText(label="LIME weight towards thumbs down (red)",
                                       show_inline_category=False)
        turn_shap = gr.Dataframe(label="SHAP values of the turn's words and word pairs",
                                 interactive=False)
        model = gr.State(None)

    @shows_errors(lambda m: (None, problem(m), None, None, gr.update()))
    def fit():
        turns = services.fairness.turns()
        fitted = train_feedback_model(turns)
        rated = labelled_turns(turns).drop_duplicates("response_id")
        options = [(f"{'👎' if r.down else '👍'} {r.prompt[:70]}", r.response_id)
                   for r in rated.itertuples()]
        text = (f"Held-out accuracy **{fitted.accuracy:.0%}** on {fitted.test_size} turns "
                f"(always guessing the majority: {fitted.baseline:.0%}); trained on "
                f"{fitted.train_size} turns, {fitted.down_share:.0%} of them thumbs down.")
        top = fitted.top_words.round(4)
        return (fitted, text, feedback_words_figure(top.to_dict(orient="records")), top,
                gr.update(choices=options))

    def explain_turn(fitted, response_id):
        if fitted is None:
            return "⚠️ Train the classifier first.", None, None
        row = services.feedback.turn(response_id) if response_id else None
        if row is None:
            return "⚠️ Choose a rated turn.", None, None
        text = f"{row['prompt']} \n {row['response']}"
        explained = fitted.explain_turn(text)
        shap_frame = pd.DataFrame(explained["shap"], columns=["word", "shap"]).round(4)
        info = f"Probability of a thumbs down: **{explained['probability_down']:.0%}**"
        return info, highlighted_weights(text, explained["lime"]), shap_frame

    train.click(fit, None, [model, result, figure, words, turn])
    why.click(explain_turn, [model, turn], [turn_info, turn_text, turn_shap])
