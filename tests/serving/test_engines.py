"""The generation path over its engines on tiny real models: repetition stop, batches,
and the onnxruntime-genai engine against the transformers reference."""

import json
from pathlib import Path

import pytest

from core.serving.chat import ChatRequest
from core.serving.engines.run import GenerationStream, generate_batch
from core.serving.engines.transformers_engine import TRANSFORMERS
from core.serving.generation import GenerationOptions, fit_to_context
from core.serving.models import ModelService, load_model
from core.serving.repetition import RepetitionGuard
from tests.tiny_adapters import make_tiny_adapter

PROMPTS = ["hello", "quick brown fox", "What is the capital of France?", "thank you"]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir, tmp_path_factory):
    return load_model(str(tiny_model_dir), cache_dir=tmp_path_factory.mktemp("cache"))


def prepare(loaded, text, budget=200):
    return fit_to_context(loaded.tokenizer, [{"role": "user", "content": text}], budget)


def answer(loaded, text, **options):
    stream = GenerationStream(loaded, prepare(loaded, text), GenerationOptions(**options))
    return "".join(stream), stream.result


def test_the_guard_stops_a_loop_on_its_third_round_and_never_on_varied_text():
    guard = RepetitionGuard(size=4, limit=3)
    loop = [1, 2, 3, 4, 5] * 5
    stopped_at = next(i for i, unit in enumerate(loop) if guard.feed(unit))
    assert stopped_at == 4 + 5 + 5 - 1  # the first 4-gram, seen again 5 and 10 units later
    varied = RepetitionGuard(size=4, limit=3)
    assert not any(varied.feed(unit) for unit in range(200))
    off = RepetitionGuard(size=4, limit=0)
    assert not any(off.feed(unit) for unit in loop)


def test_a_looping_model_is_stopped_and_marked_repetition(tiny):
    # The tiny random model answers "hello" with one token over and over.
    _, unguarded = answer(tiny, "hello", max_new_tokens=40, temperature=0,
                          repetition_penalty=1.0, repeat_ngram_limit=0)
    assert unguarded.finish_reason == "length" and unguarded.completion_tokens == 40
    text, guarded = answer(tiny, "hello", max_new_tokens=40, temperature=0,
                           repetition_penalty=1.0)
    assert guarded.finish_reason == "repetition"
    assert guarded.completion_tokens < 40 and text == guarded.text
    assert unguarded.text.startswith(guarded.text)


def test_a_chat_turn_that_loops_is_logged_with_finish_reason_repetition(services):
    options = GenerationOptions(max_new_tokens=40, temperature=0, repetition_penalty=1.0)
    last = services.chat.complete(ChatRequest(prompt="hello", options=options))
    assert last.turn.finish_reason == "repetition"
    assert last.turn.settings["engine"] == "transformers"
    stored = services.chat.log.get_turn(last.turn.id)
    assert stored["finish_reason"] == "repetition"


def test_options_reject_out_of_range_repetition_settings():
    from core.errors import InvalidInput

    for bad in (dict(repetition_penalty=0.5), dict(repeat_ngram_size=1),
                dict(repeat_ngram_limit=-1)):
        with pytest.raises(InvalidInput):
            GenerationOptions(**bad)


def test_a_batch_gives_each_prompt_its_own_greedy_answer(tiny):
    options = GenerationOptions(max_new_tokens=10, temperature=0)
    alone = [answer(tiny, p, max_new_tokens=10, temperature=0)[1] for p in PROMPTS]
    batch = generate_batch(tiny, [prepare(tiny, p) for p in PROMPTS], options)
    assert [r.text for r in batch] == [r.text for r in alone]
    assert [r.finish_reason for r in batch] == [r.finish_reason for r in alone]
    assert all(r.engine == "transformers" and r.confidence is not None for r in batch)


def test_answer_prompts_answers_in_batches_with_progress(services):
    from core.serving.answers import answer_prompts
    from core.serving.modelspec import ResolvedModel

    seen = []
    target = ResolvedModel("base", services.models.name, None, None)
    prompts = [f"question {i}" for i in range(10)]  # two batches
    answers = answer_prompts(services.models, target, prompts, max_new_tokens=6,
                             progress=lambda done, total: seen.append((done, total)))
    assert len(answers) == 10 and seen == [(8, 10), (10, 10)]
    with services.models.use(None) as loaded:
        _, single = answer(loaded, "question 3", max_new_tokens=6, temperature=0)
    assert answers[3]["answer"] == single.text


# --- onnxruntime-genai on a tiny model ------------------------------------------------

og = pytest.importorskip("onnxruntime_genai")


@pytest.fixture(scope="module")
def onnx_service(tiny_model_dir, tmp_path_factory):
    """A model service on the exact (fp32) fast engine, its base copy converted up front."""
    service = ModelService(str(tiny_model_dir), cache_dir=tmp_path_factory.mktemp("models"),
                           engine="onnx-fp32")
    service.fast_builds().wait(None)
    return service


@pytest.fixture(scope="module")
def tiny_adapter(tiny_model_dir, tmp_path_factory):
    return make_tiny_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapter") / "a1")


def test_the_fast_engine_gives_the_reference_greedy_answers(onnx_service, tiny):
    options = dict(max_new_tokens=12, temperature=0)
    with onnx_service.use(None) as loaded:
        assert loaded.engine is not None and loaded.engine.name == "onnx-fp32"
        fast = [answer(loaded, p, **options)[1] for p in PROMPTS]
    reference = [answer(tiny, p, **options)[1] for p in PROMPTS]
    assert [r.text for r in fast] == [r.text for r in reference]
    assert all(r.engine == "onnx-fp32" for r in fast)
    for mine, theirs in zip(fast, reference, strict=True):
        assert mine.confidence == pytest.approx(theirs.confidence, abs=0.01)  # fp32 rounding


def test_the_fast_engine_batches_and_stops_loops(onnx_service):
    with onnx_service.use(None) as loaded:
        options = GenerationOptions(max_new_tokens=10, temperature=0)
        batch = generate_batch(loaded, [prepare(loaded, p) for p in PROMPTS], options)
        alone = [answer(loaded, p, max_new_tokens=10, temperature=0)[1] for p in PROMPTS]
        _, looped = answer(loaded, "hello", max_new_tokens=40, temperature=0,
                           repetition_penalty=1.0)
    assert [r.text for r in batch] == [r.text for r in alone]
    assert looped.finish_reason == "repetition" and looped.engine == "onnx-fp32"


def test_a_fast_engine_batch_answers_each_prompt_as_it_would_alone(sharp_service):
    """Rows of different lengths in one batch (the peaked model, so a row that reads its
    padding answers otherwise)."""
    service, _ = sharp_service
    options = GenerationOptions(max_new_tokens=12, temperature=0)
    with service.use(None) as loaded:
        prompts = [prepare(loaded, p) for p in PROMPTS]
        assert len({len(p.input_ids) for p in prompts}) > 1
        batch = generate_batch(loaded, prompts, options)
        alone = [generate_batch(loaded, [p], options)[0] for p in prompts]
    assert [r.text for r in batch] == [r.text for r in alone]
    assert [r.confidence for r in batch] == pytest.approx([r.confidence for r in alone],
                                                          abs=1e-4)


def test_sampling_on_the_fast_engine_answers_and_follows_the_torch_seed(onnx_service):
    import torch

    texts = []
    with onnx_service.use(None) as loaded:
        for _ in range(2):
            torch.manual_seed(7)
            text, result = answer(loaded, "hello", max_new_tokens=8, temperature=0.7, top_p=0.9)
            assert result.completion_tokens >= 1 and text == result.text
            texts.append(text)
    assert texts[0] == texts[1]


@pytest.fixture(scope="module")
def sharp_service(tmp_path_factory):
    """The fast engine (and the reference) on a tiny model with its weights scaled up: its
    next-token distributions are peaked and change from step to step, as a trained model's
    do, so sampling settings and per-token confidences are tell-tale (the random tiny
    model's are flat and it repeats one token)."""
    import torch
    from transformers import AutoModelForCausalLM

    from tests.tiny_models import make_tiny_llama

    folder = make_tiny_llama(tmp_path_factory.mktemp("sharp") / "sharp-llama")
    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "norm" not in name:
                weight.mul_(20.0)
    model.save_pretrained(folder)
    cache = tmp_path_factory.mktemp("sharp-models")
    service = ModelService(str(folder), cache_dir=cache, engine="onnx-fp32")
    service.fast_builds().wait(None)
    return service, load_model(str(folder), cache_dir=cache)


def step_logprobs(engine, loaded, text, options):
    """Each chosen token with its log-probability, as the engine reports them."""
    steps = engine.steps(loaded, [prepare(loaded, text).input_ids], options, lambda: False)
    tokens = [step[0] for step in steps]
    return list(zip(tokens, steps.logprobs[0], strict=True))


def test_the_fast_engine_reports_each_tokens_own_logprob(sharp_service):
    service, reference = sharp_service
    options = GenerationOptions(max_new_tokens=12, temperature=0)
    with service.use(None) as loaded:
        for prompt in PROMPTS:
            fast = step_logprobs(loaded.engine, loaded, prompt, options)
            slow = step_logprobs(TRANSFORMERS, reference, prompt, options)
            assert [t for t, _ in fast] == [t for t, _ in slow]
            # the normaliser sums int8 logits past the 32 computed exactly: on this tiny
            # model's flatter steps that tail holds most of the mass, and moves it by < 0.002
            assert [lp for _, lp in fast] == pytest.approx([lp for _, lp in slow], abs=2e-3)
            assert len({round(lp, 2) for _, lp in fast}) > 1  # the check can tell steps apart


def test_the_repetition_penalty_counts_the_answer_not_the_prompt(sharp_service):
    """Both engines penalise only the tokens already answered (a grounded answer copies
    names and numbers from its prompt); transformers' own penalty, which counts the prompt
    too, answers otherwise."""
    import torch

    service, reference = sharp_service
    options = GenerationOptions(max_new_tokens=12, temperature=0, repetition_penalty=2.0)
    prompt_counted = 0
    with service.use(None) as loaded:
        for prompt in PROMPTS:
            fast = [token for token, _ in step_logprobs(loaded.engine, loaded, prompt, options)]
            slow = [token for token, _ in step_logprobs(TRANSFORMERS, reference, prompt, options)]
            assert fast == slow
            ids = prepare(reference, prompt).input_ids
            whole = reference.model.generate(
                torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=12, do_sample=False, repetition_penalty=2.0)
            prompt_counted += whole[0, len(ids):].tolist() != slow
    assert prompt_counted  # so the check can tell the two apart


def test_penalised_divides_positive_and_multiplies_negative_logits_of_answered_tokens_only():
    import numpy as np

    from core.serving.engines.onnx import penalised

    logits = np.array([[2.0, -2.0, 2.0], [2.0, -2.0, 2.0]], dtype=np.float32)
    out = penalised(logits, [{0, 1}, set()], 2.0)
    assert out.tolist() == [[1.0, -4.0, 2.0], [2.0, -2.0, 2.0]]
    assert logits[0, 0] == 2.0  # the engine's own logits untouched


def test_sampling_on_the_fast_engine_keeps_to_the_nucleus_and_a_low_temperature(sharp_service):
    import torch

    service, reference = sharp_service
    greedy = [answer(reference, p, max_new_tokens=12, temperature=0)[1].text for p in PROMPTS]
    with service.use(None) as loaded:
        # a nucleus this small holds only the likeliest token: greedy at any temperature
        for seed in range(3):
            torch.manual_seed(seed)
            hot = [answer(loaded, p, max_new_tokens=12, temperature=1.5, top_p=1e-6)[1].text
                   for p in PROMPTS]
            assert hot == greedy
        cold = []
        for seed in range(5):
            torch.manual_seed(seed)
            cold += [answer(loaded, p, max_new_tokens=12, temperature=0.05)[1].text
                     for p in PROMPTS]
    # a random model's near-ties still split some answers
    assert sum(a == b for a, b in zip(cold, greedy * 5, strict=True)) > len(cold) // 2


def test_the_fast_engine_stops_when_asked(onnx_service):
    with onnx_service.use(None) as loaded:
        stream = GenerationStream(loaded, prepare(loaded, "hi"), GenerationOptions(
            max_new_tokens=100, temperature=0, repeat_ngram_limit=0))
        for count, _ in enumerate(stream, 1):
            if count == 3:
                stream.stop_event.set()
    assert stream.result.finish_reason == "cancelled"
    assert stream.result.completion_tokens < 100


def test_an_adapter_answers_on_transformers_until_its_converted_copy_is_built(
    onnx_service, tiny_adapter
):
    options = dict(max_new_tokens=12, temperature=0)
    builds = onnx_service.fast_builds()
    with onnx_service.use(tiny_adapter) as loaded:
        assert loaded.engine is None  # not converted yet: the reference engine answers
        reference = [answer(loaded, p, **options)[1] for p in PROMPTS]
    builds.wait(Path(tiny_adapter))  # what the background conversion does
    with onnx_service.use(tiny_adapter) as loaded:
        assert loaded.engine is not None
        fast = [answer(loaded, p, **options)[1] for p in PROMPTS]
    assert [r.text for r in fast] == [r.text for r in reference]
    with onnx_service.use(None) as loaded:
        base = [answer(loaded, p, **options)[1].text for p in PROMPTS]
    assert base != [r.text for r in fast]  # the adapter really changes the answers


def test_base_and_adapter_side_by_side_on_the_fast_engine_in_one_pass(onnx_service, tiny_adapter):
    onnx_service.fast_builds().wait(Path(tiny_adapter))
    options = GenerationOptions(max_new_tokens=12, temperature=0)
    with onnx_service.use_rows([None, tiny_adapter]) as loaded:
        assert loaded.engine is not None
        prompt = prepare(loaded, PROMPTS[1])
        steps = loaded.engine.steps(loaded, [prompt.input_ids] * 2, options, lambda: False)
        assert [indices for _, indices in steps.passes()] == [[0, 1]]  # one generator
        pair = generate_batch(loaded, [prompt, prompt], options)
    with onnx_service.use(None) as loaded:
        base = answer(loaded, PROMPTS[1], max_new_tokens=12, temperature=0)[1]
    with onnx_service.use(tiny_adapter) as loaded:
        tuned = answer(loaded, PROMPTS[1], max_new_tokens=12, temperature=0)[1]
    assert [r.text for r in pair] == [base.text, tuned.text]


def test_base_rows_ride_in_the_first_adapter_pass_and_other_adapters_get_their_own():
    from core.serving.engines.onnx import Converted, OnnxSteps

    base, first, second = (Converted(object(), pad_id=0, vocab_size=8, switched=switched)
                           for switched in (False, True, True))

    def passes(copies):
        steps = OnnxSteps(copies, [[1]] * len(copies), GenerationOptions(), lambda: False)
        return [(copy, rows) for copy, rows in steps.passes()]

    assert passes([base, first, second, first, base]) == [(first, [0, 1, 3, 4]),
                                                          (second, [2])]
    assert passes([base, base]) == [(base, [0, 1])]


def test_a_model_that_cannot_convert_keeps_answering_on_transformers(tmp_path, tiny_model_dir):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    config = (broken / "config.json").read_text().replace('"llama"', '"no-such-architecture"')
    (broken / "config.json").write_text(config)
    service = ModelService(str(tiny_model_dir), cache_dir=tmp_path / "models", engine="onnx")
    builds = service.fast_builds()
    builds.source = broken  # what the converter reads
    with service.use(None) as loaded:
        assert loaded.engine is None
    builds.join()  # the background conversion fails and is remembered
    assert builds.status()["failed"]
    with service.use(None) as loaded:
        assert loaded.engine is None
        _, result = answer(loaded, "hello", max_new_tokens=4, temperature=0)
    assert result.engine == TRANSFORMERS.name


def renamed_module(adapter: Path) -> None:
    """The adapter's q_proj weights saved under a module name the model does not have."""
    from safetensors.numpy import load_file, save_file

    weights = adapter / "adapter_model.safetensors"
    save_file({key.replace("q_proj", "x_proj"): value
               for key, value in load_file(str(weights)).items()}, str(weights))


@pytest.mark.parametrize("kind, edit, problem", [
    (dict(use_dora=True), None, "plain LoRA adapters; this one sets use_dora"),
    (dict(targets=("embed_tokens",)), None, "linear layers only, not .*embed_tokens"),
    ({}, renamed_module, "no matmul in the converted model computes .*x_proj"),
])
def test_an_adapter_the_fast_engine_cannot_run_fails_alone(onnx_service, tiny_model_dir,
                                                          tmp_path, kind, edit, problem):
    adapter = make_tiny_adapter(tiny_model_dir, tmp_path / "adapter", **kind)
    if edit:
        edit(adapter)
    builds = onnx_service.fast_builds()
    with pytest.raises(ValueError, match=problem):
        builds.wait(adapter)
    assert not builds.folder(adapter).exists()
    assert not [folder for folder in builds.root.iterdir() if folder.name.endswith(".partial")]
    with onnx_service.use(None) as loaded:
        assert loaded.engine is not None  # the base copy still answers


def test_auto_is_the_int8_fast_engine_on_a_cpu_and_transformers_on_a_gpu():
    from core.serving.engines import resolve_engine

    assert resolve_engine("auto", "cpu") == "onnx-int8"  # onnxruntime-genai is installed here
    assert resolve_engine("auto", "cuda") == "transformers"
    assert resolve_engine("transformers", "cpu") == "transformers"



def test_the_int8_engine_answers_from_its_own_copy_close_to_the_reference(
        sharp_service, tmp_path):
    """int8 weights and activations: its own converted copy, its output layer int8 with the
    top logits rescored in fp32, and per-step log-probabilities near the fp32 reference's on
    the peaked tiny model (quantised, so not bit-equal)."""
    import onnx

    exact_service, reference = sharp_service
    service = ModelService(exact_service.name, cache_dir=tmp_path / "models", engine="onnx-int8")
    service.fast_builds().wait(None)
    folder = service.fast_builds().folder(None)
    graph = onnx.load(str(folder / "model.onnx"), load_external_data=False).graph
    kinds = {node.name: node.op_type for node in graph.node}
    assert kinds["/lm_head/MatMul_Q8"] == "MatMulNBits"  # the output layer runs int8
    assert kinds["/lm_head/Exact"] == "MatMul"  # and its top logits again in fp32
    assert list(kinds.values()).count("MatMulNBits") > 1  # the rest quantised
    options = GenerationOptions(max_new_tokens=1, temperature=0)
    with service.use(None) as loaded:
        assert loaded.engine.name == "onnx-int8"
        for prompt in PROMPTS:
            (token, quantised), = step_logprobs(loaded.engine, loaded, prompt, options)
            (wanted, exact), = step_logprobs(TRANSFORMERS, reference, prompt, options)
            assert token == wanted and quantised == pytest.approx(exact, rel=0.15)


def first_logits(folder: Path, ids: list[int]):
    import numpy as np
    import onnxruntime_genai as og

    model = og.Model(str(folder))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + 1)
    generator = og.Generator(model, params)
    generator.append_tokens(np.array([ids], dtype=np.int32))
    return generator.get_logits().reshape(-1)


def test_an_int8_adapter_copy_is_the_base_copy_with_fp32_lora_paths_and_answers_as_it(
        sharp_service, tmp_path):
    """The base copy's int8 graph and weights (hard links, not a second conversion) with
    the LoRA paths added in fp32, one low-rank pair per shared input; its adapter rows
    choose the reference adapter's tokens."""
    import onnx

    exact_service, _ = sharp_service
    adapter = make_tiny_adapter(Path(exact_service.name), tmp_path / "adapter")
    service = ModelService(exact_service.name, cache_dir=tmp_path / "models", engine="onnx-int8")
    service.fast_builds().wait(adapter)
    base, folder = (service.fast_builds().folder(a) for a in (None, adapter))
    assert (folder / "model.onnx.data").samefile(base / "model.onnx.data")
    graph = onnx.load(str(folder / "model.onnx"), load_external_data=False).graph
    lora = [node.op_type for node in graph.node if node.name.startswith("/lora.")
            and node.op_type in ("MatMul", "MatMulNBits")]
    layers = json.loads((Path(exact_service.name) / "config.json").read_text())[
        "num_hidden_layers"]
    assert lora == ["MatMul"] * (layers * 2 * 2)  # q and v share A and B, down has its own
    base_graph = onnx.load(str(base / "model.onnx"), load_external_data=False).graph
    kinds = {node.name: node.op_type for node in graph.node}
    assert {n.name: n.op_type for n in base_graph.node}.items() <= kinds.items()
    assert kinds["/lm_head/Exact"] == "MatMul"  # the output layer's rescoring kept
    options = dict(max_new_tokens=1, temperature=0)  # later tokens part on int8 near-ties
    with service.use(adapter) as loaded:
        assert loaded.engine.name == "onnx-int8"
        tuned = [answer(loaded, p, **options)[1].text for p in PROMPTS]
    with service.use(None) as loaded:
        assert [answer(loaded, p, **options)[1].text for p in PROMPTS] != tuned
    reference = ModelService(exact_service.name, cache_dir=tmp_path / "models",
                             engine="transformers")
    with reference.use(adapter) as loaded:
        assert [answer(loaded, p, **options)[1].text for p in PROMPTS] == tuned


def test_a_rescored_output_layer_gives_the_fp32_layers_own_top_logits(
        sharp_service, tmp_path, monkeypatch):
    import shutil

    import numpy as np

    from core.serving.engines import onnx as engines
    from core.serving.engines.onnx_graph import rescore_output_layer

    service, reference = sharp_service
    monkeypatch.setitem(engines.RECIPES, "onnx-fp32", engines.Recipe("fp32", "plain"))
    plain = ModelService(service.name, cache_dir=tmp_path / "models", engine="onnx-fp32")
    exact_copy = plain.fast_builds().folder(None)
    plain.fast_builds().wait(None)
    rescored_copy = tmp_path / "rescored"
    shutil.copytree(exact_copy, rescored_copy)
    # the tiny model ties its embedding to the output layer: both now read the new rows
    assert rescore_output_layer(rescored_copy / "model.onnx", exact_top=4)
    for prompt in PROMPTS:
        ids = prepare(reference, prompt).input_ids
        exact, rescored = first_logits(exact_copy, ids), first_logits(rescored_copy, ids)
        top = np.argsort(rescored)[-4:]
        assert rescored[top] == pytest.approx(exact[top], abs=1e-4)
        rest = np.setdiff1d(np.arange(len(exact)), top)
        assert not np.allclose(rescored[rest], exact[rest], atol=1e-6)  # the tail is int8
        assert np.abs(rescored - exact).max() < 0.05 * (exact.max() - exact.min())
        assert rescored.argmax() == exact.argmax()


def batch_logits(folder: Path, rows: list[list[int]], steps: int = 3):
    """Each step's logits for rows padded on the right, as the engine sends them."""
    import numpy as np
    import onnxruntime_genai as og

    model = og.Model(str(folder))
    pad = json.loads((folder / "genai_config.json").read_text())["model"]["pad_token_id"]
    width = max(map(len, rows))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=width + steps, batch_size=len(rows))
    generator = og.Generator(model, params)
    generator.append_tokens(np.array([r + [pad] * (width - len(r)) for r in rows], np.int32))
    logits = []
    for _ in range(steps):
        logits.append(generator.get_logits().reshape(len(rows), -1).copy())
        generator.generate_next_token()
    return logits


def test_the_output_layer_on_last_positions_gives_each_padded_row_its_own_logits(
        sharp_service, tmp_path, monkeypatch):
    import shutil

    import numpy as np

    from core.serving.engines import onnx as engines
    from core.serving.engines.onnx_graph import output_layer_on_last_positions

    service, reference = sharp_service
    monkeypatch.setitem(engines.RECIPES, "onnx-fp32", engines.Recipe("fp32", "every-position"))
    monkeypatch.setattr(engines, "output_layer_on_last_positions", lambda path: False)
    plain = ModelService(service.name, cache_dir=tmp_path / "models", engine="onnx-fp32")
    plain.fast_builds().wait(None)
    every = plain.fast_builds().folder(None)
    last = tmp_path / "last"
    shutil.copytree(every, last)
    assert output_layer_on_last_positions(last / "model.onnx")
    rows = [prepare(reference, prompt).input_ids for prompt in PROMPTS]
    assert len({len(row) for row in rows}) > 1  # the shorter rows are padded
    for wanted, got in zip(batch_logits(every, rows), batch_logits(last, rows), strict=True):
        np.testing.assert_allclose(got, wanted, atol=1e-4)
        assert (got.argmax(-1) == wanted.argmax(-1)).all()


def test_old_recipes_and_the_least_recently_used_adapter_copies_are_pruned(
        tiny_model_dir, tiny_adapter, tmp_path, monkeypatch):
    import os

    from core.serving.engines import onnx as engines

    monkeypatch.setattr(engines, "KEPT_ADAPTER_COPIES", 3)
    builds = ModelService(str(tiny_model_dir), cache_dir=tmp_path / "models",
                          engine="onnx-fp32").fast_builds()
    old_recipe = tmp_path / "models" / "onnx" / "int8" / "a-copy"  # a folder no recipe reads
    old_recipe.mkdir(parents=True)
    assert builds.wait(Path(tiny_adapter)).switched  # converted, which prunes, and loaded
    assert not old_recipe.parent.exists() and builds.folder(Path(tiny_adapter)).is_dir()

    others = [builds.root / f"{Path(tiny_model_dir).name}+lora-{n}" for n in range(3)]
    for when, folder in enumerate(others):
        folder.mkdir()
        os.utime(folder, (when, when))  # used in this order, the first longest ago
    builds.prune(keep=others[2])  # as after converting others[2]
    # three kept: the loaded copy, the new one, and the most recently used of the rest
    assert [folder.is_dir() for folder in others] == [False, True, True]
    assert builds.folder(Path(tiny_adapter)).is_dir()
