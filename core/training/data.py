"""Rows -> token ids with loss masks, and batches that waste no compute on padding.

Chat ("sft") rows learn only the assistant's final answer: the prompt tokens get
label -100. Plain "text" rows learn every token. Each optimizer step takes a random
sample of examples, as a plain trainer does; inside the step they are cut into
micro-batches of similar length, so padding is a few tokens per batch (the attention
mask hides it) and the step's gradient is that of the random sample.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from core.errors import InvalidInput
from core.serving.generation import render_messages

IGNORE = -100
# What one more forward and backward pass costs, in padded tokens: a micro-batch is split
# further only when that saves more padding than this.
PASS_COST = 64


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]  # causal: same length as input_ids; seq2seq: the decoder target

    @property
    def length(self) -> int:
        return len(self.input_ids) + (0 if len(self.labels) == len(self.input_ids) else
                                      len(self.labels))


def split_chat(tokenizer, messages: list[dict]) -> tuple[str, str]:
    """(prompt text, target text) with the prompt rendered exactly as chat serving renders it."""
    if len(messages) < 2 or messages[-1].get("role") != "assistant":
        raise InvalidInput("a chat row needs at least two messages, the last from the assistant")
    prompt = render_messages(tokenizer, messages[:-1])
    answer = messages[-1]["content"]
    if getattr(tokenizer, "chat_template", None):
        full = tokenizer.apply_chat_template(messages, tokenize=False)
        if full.startswith(prompt):
            return prompt, full[len(prompt):]
        return prompt, answer + (tokenizer.eos_token or "")
    return prompt, " " + answer + (tokenizer.eos_token or "")


def fit_chat(tokenizer, messages: list[dict], max_length: int) -> tuple[list[dict], int]:
    """The messages cut to fit `max_length` tokens with the answer whole, and how many prompt
    tokens went: first the system message's tail (where grounded turns carry their retrieved
    passages), then the oldest turns, last the start of the final user message."""

    def overflow(msgs: list[dict]) -> int:
        prompt, target = split_chat(tokenizer, msgs)
        return len(tokenizer(prompt + target, add_special_tokens=False)["input_ids"]) - max_length

    messages = [dict(m) for m in messages]
    excess = first = overflow(messages)
    if excess <= 0:
        return messages, 0
    if messages[0]["role"] == "system":
        ids = tokenizer(messages[0]["content"], add_special_tokens=False)["input_ids"]
        for slack in (0, 4, 16):  # re-tokenising the cut text may merge a token or two
            keep = max(0, len(ids) - excess - slack)
            messages[0]["content"] = tokenizer.decode(ids[:keep]).strip()
            if (current := overflow(messages)) <= 0:
                return messages, first - current
    while len(messages) > 2 + (messages[0]["role"] == "system") and overflow(messages) > 0:
        del messages[1 if messages[0]["role"] == "system" else 0]
    excess = overflow(messages)
    if excess > 0:
        ids = tokenizer(messages[-2]["content"], add_special_tokens=False)["input_ids"]
        messages[-2]["content"] = tokenizer.decode(ids[min(len(ids), excess + 4):])
    return messages, first - max(overflow(messages), 0)


def encode_causal(tokenizer, row: dict, kind: str, max_length: int) -> Example | None:
    if kind == "text":
        ids = tokenizer(row["text"], add_special_tokens=True)["input_ids"]
        if tokenizer.eos_token_id is not None:
            ids = [*ids, tokenizer.eos_token_id]
        ids = ids[:max_length]
        return Example(ids, list(ids)) if len(ids) > 1 else None
    messages, _ = fit_chat(tokenizer, row["messages"], max_length)
    prompt, target = split_chat(tokenizer, messages)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    target_ids = tokenizer(target, add_special_tokens=False)["input_ids"]
    ids = (prompt_ids + target_ids)[:max_length]
    labels = ([IGNORE] * len(prompt_ids) + target_ids)[:max_length]
    if all(label == IGNORE for label in labels[1:]):
        return None  # the answer alone fills max_length: nothing to learn
    return Example(ids, labels)


@dataclass(frozen=True)
class LengthReport:
    """How a dataset's rows measure against a run's max_length, before the run starts."""

    rows: int
    max_length: int
    longest: int  # tokens of the longest row as given
    over: int  # rows longer than max_length
    fitted: int  # of those, rows that train after their prompt context is cut
    dropped: int  # rows that cannot train at this max_length

    @property
    def fix(self) -> str | None:
        if not self.dropped:
            return None
        return (f"{self.dropped} of {self.rows} rows cannot train at max_length "
                f"{self.max_length} (the answer alone is too long); raise max_length to at "
                f"least {min(self.longest, 32768)} or shorten those answers")

    def to_dict(self) -> dict:
        return {"rows": self.rows, "max_length": self.max_length, "longest": self.longest,
                "over": self.over, "fitted": self.fitted, "dropped": self.dropped,
                "fix": self.fix}


def row_length(tokenizer, row: dict, kind: str) -> int:
    if kind == "text":
        return len(tokenizer(row["text"], add_special_tokens=True)["input_ids"]) + 1
    prompt, target = split_chat(tokenizer, row["messages"])
    return len(tokenizer(prompt + target, add_special_tokens=False)["input_ids"])


def length_report(tokenizer, rows: list[dict], *, kind: str, max_length: int,
                  seq2seq: bool = False) -> LengthReport:
    lengths = [row_length(tokenizer, row, kind) for row in rows]
    over = [row for row, n in zip(rows, lengths, strict=True) if n > max_length]
    encode = encode_seq2seq if seq2seq else encode_causal
    dropped = sum(encode(tokenizer, row, kind, max_length) is None for row in over)
    return LengthReport(rows=len(rows), max_length=max_length, longest=max(lengths, default=0),
                        over=len(over), fitted=len(over) - dropped, dropped=dropped)


def encode_seq2seq(tokenizer, row: dict, kind: str, max_length: int) -> Example | None:
    if kind != "sft":
        raise InvalidInput("encoder-decoder models (T5) train on chat (sft) datasets only")
    prompt, _ = split_chat(tokenizer, row["messages"])
    source = tokenizer(prompt)["input_ids"][:max_length]
    target = tokenizer(row["messages"][-1]["content"])["input_ids"][:max_length - 1]
    if tokenizer.eos_token_id is not None and target[-1:] != [tokenizer.eos_token_id]:
        target.append(tokenizer.eos_token_id)  # learn where to stop
    return Example(source, target) if source and target else None


def encode_rows(tokenizer, rows: list[dict], *, kind: str, max_length: int,
                seq2seq: bool) -> list[Example]:
    encode = encode_seq2seq if seq2seq else encode_causal
    examples = [encode(tokenizer, row, kind, max_length) for row in rows]
    return [example for example in examples if example is not None]


def micro_batches(indices: list[int], lengths: list[int], max_rows: int) -> list[list[int]]:
    """One step's examples, longest first, cut into runs of at most `max_rows` that cost the
    fewest padded tokens plus PASS_COST per run (dynamic programming over the sorted order).

    Grouping lengths across steps instead (sorted batches, then shuffled) would make some
    steps all short examples; with clipped, Adam-normalised updates every step weighs the
    same, so the short examples' tokens would count for more than a plain trainer's.
    """
    ordered = sorted(indices, key=lambda i: lengths[i], reverse=True)
    cost = [0.0] + [float("inf")] * len(ordered)
    start_of = [0] * (len(ordered) + 1)
    for end in range(1, len(ordered) + 1):
        for start in range(max(0, end - max_rows), end):
            total = cost[start] + PASS_COST + lengths[ordered[start]] * (end - start)
            if total < cost[end]:
                cost[end], start_of[end] = total, start
    runs, end = [], len(ordered)
    while end:
        runs.append(ordered[start_of[end]:end])
        end = start_of[end]
    return runs[::-1]


def step_plan(lengths: list[int], *, batch_size: int, grad_accumulation: int, epochs: float,
              total_steps: int, seed: int) -> list[list[list[int]]]:
    """Every optimizer step's micro-batches, in order; the same plan on resume."""
    per_step = batch_size * grad_accumulation
    plan: list[list[list[int]]] = []
    epoch = 0
    while len(plan) < total_steps:
        order = list(range(len(lengths)))
        random.Random(seed + epoch).shuffle(order)
        plan += [micro_batches(order[i:i + per_step], lengths, batch_size)
                 for i in range(0, len(order), per_step)]
        epoch += 1
    return plan[:total_steps]


def collate(examples: list[Example], *, pad_id: int, seq2seq: bool):
    """Right-padded tensors with an attention mask; padded label positions are ignored."""
    import torch

    def pad(seqs: list[list[int]], value: int):
        width = max(len(s) for s in seqs)
        return torch.tensor([s + [value] * (width - len(s)) for s in seqs], dtype=torch.long)

    input_ids = pad([e.input_ids for e in examples], pad_id)
    mask = pad([[1] * len(e.input_ids) for e in examples], 0)
    labels = pad([e.labels for e in examples], IGNORE)
    batch = {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
    tokens = int(mask.sum()) + (int((labels != IGNORE).sum()) if seq2seq else 0)
    return batch, tokens
