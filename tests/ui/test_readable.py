"""Cells and cards people can read, including turns nobody rated yet (no rating time: NaT)."""

from __future__ import annotations

import pandas as pd

from ui.cards import answer_cards
from ui.readable import cell, when


def test_missing_times_are_blank_and_an_unrated_card_shows_when_it_was_asked():
    assert when(pd.NaT) == "" and cell(pd.NaT) is None
    asked = pd.Timestamp("2026-12-06 03:19")
    card = answer_cards(pd.DataFrame([
        {"prompt": "How long?", "response": "Two years.", "rated_at": pd.NaT,
         "created_at": asked, "label": "checked", "curated_by": "lena"}]))
    assert "2026-12-06 03:19" in card and "NaT" not in card
    assert "label <b>checked</b> by lena" in card
