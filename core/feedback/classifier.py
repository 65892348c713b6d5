"""What users dislike: a TF-IDF + logistic regression classifier of thumbs-down turns.

Trained on rated turns (prompt and answer text); reports held-out accuracy against
always guessing the majority class, the words that push towards a thumbs down
globally (coefficients and mean |SHAP| from a LinearExplainer), and LIME/SHAP word
weights for one chosen turn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.errors import InvalidInput

MIN_TURNS = 8
MIN_PER_CLASS = 3
SEPARATOR = " \n "


def labelled_turns(turns: pd.DataFrame) -> pd.DataFrame:
    """One row per rated turn: down = thumbs down (or 1-2 stars when no thumb was given)."""
    frame = turns.copy()
    down = np.where(frame["thumb_up"].notna(), frame["thumb_up"] == 0, frame["stars"] <= 2)
    rated = frame["thumb_up"].notna() | frame["stars"].notna()
    frame["down"] = down.astype(int)
    frame = frame[rated & (frame["thumb_up"].notna() | (frame["stars"] != 3))]
    frame["text"] = frame["prompt"].fillna("") + SEPARATOR + frame["response"].fillna("")
    return frame.reset_index(drop=True)


@dataclass(frozen=True, kw_only=True)
class FeedbackModel:
    pipeline: object  # sklearn Pipeline(tfidf, logistic regression)
    background: object  # tf-idf rows of the training texts, for SHAP
    accuracy: float  # on the held-out turns
    baseline: float  # accuracy of always answering the majority class
    train_size: int
    test_size: int
    down_share: float
    top_words: pd.DataFrame  # word, coefficient, mean_abs_shap (positive -> thumbs down)

    def probability_down(self, texts: list[str]) -> np.ndarray:
        return self.pipeline.predict_proba(list(texts))[:, 1]

    def explain_turn(self, text: str, *, num_samples: int = 500, seed: int = 0) -> dict:
        """LIME and SHAP weights of the turn's words towards a thumbs down."""
        import shap
        from lime.lime_text import LimeTextExplainer

        lime = LimeTextExplainer(class_names=["up", "down"], random_state=seed)
        explained = lime.explain_instance(
            text, self.pipeline.predict_proba, num_features=20, num_samples=num_samples
        )
        vectorizer, classifier = self.pipeline[0], self.pipeline[1]
        row = vectorizer.transform([text])
        explainer = shap.LinearExplainer(classifier, self.background)
        values = np.asarray(explainer(row).values).reshape(-1)
        names = vectorizer.get_feature_names_out()
        present = row.nonzero()[1]
        shap_words = sorted(
            ((str(names[i]), float(values[i])) for i in present), key=lambda p: -abs(p[1])
        )
        return {
            "probability_down": float(self.probability_down([text])[0]),
            "lime": [(str(w), float(v)) for w, v in explained.as_list(label=1)],
            "shap": shap_words[:20],
        }

    def summary(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "baseline": self.baseline,
            "train_size": self.train_size,
            "test_size": self.test_size,
            "down_share": self.down_share,
            "top_words": self.top_words.to_dict(orient="records"),
        }


def train_feedback_model(turns: pd.DataFrame, *, seed: int = 0, top: int = 20) -> FeedbackModel:
    import shap
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline

    frame = labelled_turns(turns)
    down = int(frame["down"].sum())
    up = len(frame) - down
    if len(frame) < MIN_TURNS:
        raise InvalidInput(
            f"only {len(frame)} rated turn(s); the feedback classifier needs at least {MIN_TURNS}"
        )
    if min(up, down) < MIN_PER_CLASS:
        raise InvalidInput(
            f"the rated turns have {up} thumbs up and {down} thumbs down; the classifier needs "
            f"at least {MIN_PER_CLASS} of each to learn what separates them"
        )
    train, test = train_test_split(
        frame, test_size=0.25, stratify=frame["down"], random_state=seed
    )
    pipeline = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True),
        LogisticRegression(class_weight="balanced", max_iter=1000, random_state=seed),
    )
    pipeline.fit(train["text"], train["down"])
    accuracy = float((pipeline.predict(test["text"]) == test["down"]).mean())
    majority = int(train["down"].mean() >= 0.5)
    baseline = float((test["down"] == majority).mean())
    vectorizer, classifier = pipeline[0], pipeline[1]
    background = vectorizer.transform(train["text"])
    shap_values = shap.LinearExplainer(classifier, background)(background).values
    mean_abs = np.abs(np.asarray(shap_values)).mean(axis=0)
    coefficients = classifier.coef_[0]
    order = np.argsort(-np.abs(coefficients))[:top]
    names = vectorizer.get_feature_names_out()
    top_words = pd.DataFrame({
        "word": names[order],
        "coefficient": coefficients[order],
        "mean_abs_shap": mean_abs[order],
    })
    return FeedbackModel(
        pipeline=pipeline,
        background=background,
        accuracy=accuracy,
        baseline=baseline,
        train_size=len(train),
        test_size=len(test),
        down_share=down / len(frame),
        top_words=top_words,
    )
