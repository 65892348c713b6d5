"""Several prompts answered in one generate() call, left-padded: the knowledge check's engine."""

from __future__ import annotations

import threading

from core.generation import GenerateRun, GenerationOptions, PreparedPrompt
from core.models import LoadedModel


def generate_batch(
    loaded: LoadedModel, prompts: list[PreparedPrompt], options: GenerationOptions
) -> list[str]:
    """The answer text of each prompt; rows are left-padded so they all end where decoding
    starts (the caller holds the model, with the adapter it wants, via ModelService.use)."""
    import torch

    if not prompts:
        return []
    tokenizer = loaded.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = max(len(p.input_ids) for p in prompts)
    ids = [[pad] * (width - len(p.input_ids)) + list(p.input_ids) for p in prompts]
    mask = [[0] * (width - len(p.input_ids)) + [1] * len(p.input_ids) for p in prompts]
    run = GenerateRun(
        loaded, options, torch.tensor(ids), torch.tensor(mask), stop_event=threading.Event()
    )
    for _ in run:  # steps arrive as they are decoded; only the finished rows matter here
        pass
    new = run.output.sequences[:, width:]
    return [tokenizer.decode(row, skip_special_tokens=True).strip() for row in new]
