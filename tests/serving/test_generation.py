"""Prompt fitting and streaming generation on a tiny real model."""

import threading

import pytest

from core.errors import InvalidInput
from core.feedback.turn_filter import TurnFilter
from core.serving.engines.run import GenerationStream
from core.serving.generation import GenerationOptions, fit_to_context, render_messages
from core.serving.models import load_model
from tests.tiny_models import make_tiny_llama


@pytest.fixture(scope="module")
def tiny(tiny_model_dir, tmp_path_factory):
    return load_model(str(tiny_model_dir), cache_dir=tmp_path_factory.mktemp("cache"))


def run(loaded, messages, **options):
    prompt = fit_to_context(loaded.tokenizer, messages, loaded.context_length - 16)
    stream = GenerationStream(loaded, prompt, GenerationOptions(**options))
    return list(stream), stream.result


def test_stream_yields_deltas_that_add_up_to_the_logged_text(tiny):
    deltas, result = run(
        tiny, [{"role": "user", "content": "hello"}], max_new_tokens=12, temperature=0,
        repeat_ngram_limit=0,
    )
    assert len(deltas) > 1
    assert "".join(deltas) == result.text
    assert result.completion_tokens == 12 and result.finish_reason == "length"
    assert result.confidence is not None and result.confidence <= 0
    assert result.ttft_ms is not None and result.ttft_ms <= result.latency_ms


def test_greedy_generation_is_deterministic(tiny):
    first = run(
        tiny, [{"role": "user", "content": "quick brown fox"}], max_new_tokens=8, temperature=0
    )[1]
    second = run(
        tiny, [{"role": "user", "content": "quick brown fox"}], max_new_tokens=8, temperature=0
    )[1]
    assert first.text == second.text


def test_stop_event_ends_generation_early(tiny):
    prompt = fit_to_context(tiny.tokenizer, [{"role": "user", "content": "hi"}], 100)
    stream = GenerationStream(tiny, prompt, GenerationOptions(max_new_tokens=100, temperature=0))
    for count, _ in enumerate(stream, 1):
        if count == 3:
            stream.stop_event.set()
    assert stream.result.finish_reason == "cancelled"
    assert stream.result.completion_tokens < 100


def test_oldest_turns_are_dropped_to_fit_and_the_system_prompt_stays(tiny):
    messages = [{"role": "system", "content": "be brief"}]
    for index in range(30):
        messages += [
            {"role": "user", "content": f"question {index} about the quick brown fox"},
            {"role": "assistant", "content": f"answer {index} about the lazy dog"},
        ]
    messages.append({"role": "user", "content": "final question"})
    prepared = fit_to_context(tiny.tokenizer, messages, 120)
    assert len(prepared.input_ids) <= 120
    assert prepared.dropped_turns > 0 and prepared.messages[0]["content"] == "be brief"
    assert prepared.messages[-1]["content"] == "final question"
    assert "dropped" in prepared.notice


def test_a_single_overlong_message_is_cut_from_the_left(tiny):
    words = " ".join(f"w{i}" for i in range(400))
    prepared = fit_to_context(tiny.tokenizer, [{"role": "user", "content": words}], 100)
    assert len(prepared.input_ids) <= 100 and prepared.cut_tokens > 0
    assert prepared.messages[-1]["content"].endswith("w399")


def test_models_without_a_chat_template_get_a_plain_format(tmp_path):
    loaded = load_model(
        str(make_tiny_llama(tmp_path / "plain", chat_template=False)), cache_dir=tmp_path
    )
    text = render_messages(loaded.tokenizer, [{"role": "user", "content": "hello"}])
    assert text == "User: hello\nAssistant:"
    deltas, result = run(loaded, [{"role": "user", "content": "hello"}], max_new_tokens=4)
    assert result.completion_tokens >= 1


@pytest.mark.parametrize(
    "options", [{"max_new_tokens": 0}, {"temperature": -1}, {"top_p": 0}, {"top_p": 1.5}]
)
def test_bad_generation_options_are_rejected(options):
    with pytest.raises(InvalidInput):
        GenerationOptions(**options)


def test_concurrent_streams_do_not_share_state(services):
    from core.serving.chat import ChatRequest

    def ask(out, prompt):
        out.append(
            services.chat.complete(
                ChatRequest(
                    prompt=prompt, options=GenerationOptions(max_new_tokens=6, temperature=0)
                )
            )
        )

    results: list = []
    threads = [threading.Thread(target=ask, args=(results, f"prompt {i}")) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({r.turn.id for r in results}) == 3
    assert services.log.count(TurnFilter()) == 3
