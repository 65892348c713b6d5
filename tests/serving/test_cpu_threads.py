"""Small torch work on one thread: switched in the calling thread only, always undone."""

from __future__ import annotations

import threading

import torch

from core.serving.chat import ChatRequest
from core.serving.cpu_threads import default_threads, one_thread
from core.serving.engines.transformers_engine import decodes_on_one_thread
from core.serving.generation import GenerationOptions


def count_in_new_thread() -> int:
    seen = {}
    thread = threading.Thread(target=lambda: seen.update(n=torch.get_num_threads()))
    thread.start()
    thread.join()
    return seen["n"]


def test_one_thread_applies_inside_and_is_undone():
    default = default_threads()
    with one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == default
    assert count_in_new_thread() == default


def test_a_small_model_decodes_on_one_thread_and_leaves_the_count_as_it_was(services):
    options = GenerationOptions(max_new_tokens=4, temperature=0.0)
    answer = services.chat.complete(ChatRequest(prompt="Hello there", options=options))
    assert answer.turn.completion_tokens >= 1
    assert decodes_on_one_thread(services.models.get())  # a tiny model on the CPU
    assert torch.get_num_threads() == default_threads()
    assert count_in_new_thread() == default_threads()
