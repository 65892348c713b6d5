"""Rows longer than max_length still train: prompt context is cut, never the answer."""

from __future__ import annotations

from core.training.data import IGNORE, encode_causal, fit_chat, length_report, split_chat
from tests.tiny_models import make_tokenizer

PASSAGES = "Answer using these sources:\n" + "\n".join(
    f"[{n}] The warehouse in sector {n} stores {n * 7} crates of parts." for n in range(1, 60))
ANSWER = "The Lumen valve is replaced every 90 days."


def grounded_row(history: int = 0) -> dict:
    older = [{"role": "user", "content": "an older question " * 20},
             {"role": "assistant", "content": "an older answer " * 20}] * history
    return {"messages": [{"role": "system", "content": PASSAGES}, *older,
                         {"role": "user", "content": "How often is the Lumen valve replaced?"},
                         {"role": "assistant", "content": ANSWER}]}


def answer_tokens(tokenizer, example) -> str:
    return tokenizer.decode([t for t in example.labels if t != IGNORE])


def test_a_grounded_row_keeps_its_whole_answer_and_loses_passage_tail():
    tokenizer = make_tokenizer()
    row = grounded_row()
    full = len(tokenizer(''.join(split_chat(tokenizer, row["messages"])))["input_ids"])
    assert full > 128
    example = encode_causal(tokenizer, row, "sft", 128)
    assert example is not None and len(example.input_ids) <= 128
    assert ANSWER in answer_tokens(tokenizer, example)
    fitted, cut = fit_chat(tokenizer, row["messages"], 128)
    assert cut > 0
    assert fitted[0]["content"] and PASSAGES.startswith(fitted[0]["content"][:40])
    assert fitted[-2:] == row["messages"][-2:]  # the question and the answer are whole


def test_older_turns_go_once_the_system_message_is_empty():
    tokenizer = make_tokenizer()
    row = grounded_row(history=3)
    fitted, _ = fit_chat(tokenizer, row["messages"], 120)
    assert len(fitted) < len(row["messages"]) and fitted[0]["content"] == ""
    assert fitted[-1]["content"] == ANSWER
    example = encode_causal(tokenizer, row, "sft", 120)
    assert example is not None and ANSWER in answer_tokens(tokenizer, example)


def test_short_rows_are_untouched():
    tokenizer = make_tokenizer()
    row = {"messages": [{"role": "user", "content": "hi"},
                        {"role": "assistant", "content": "hello"}]}
    assert fit_chat(tokenizer, row["messages"], 512) == (row["messages"], 0)


def test_the_length_report_counts_fitted_and_dropped_rows_and_names_the_fix():
    tokenizer = make_tokenizer()
    rows = [grounded_row(), grounded_row(),
            {"messages": [{"role": "user", "content": "say it"},
                          {"role": "assistant", "content": "word " * 400}]},
            {"messages": [{"role": "user", "content": "hi"},
                          {"role": "assistant", "content": "hello"}]}]
    report = length_report(tokenizer, rows, kind="sft", max_length=128)
    assert (report.rows, report.over) == (4, 3)
    assert report.longest > 400
    # a long answer is cut at its end and still trains; nothing here is lost
    assert (report.fitted, report.dropped, report.fix) == (3, 0, None)
    tiny = length_report(tokenizer, rows, kind="sft", max_length=24)
    assert tiny.dropped >= 2 and "max_length" in tiny.fix
