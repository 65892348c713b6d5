"""Time of SHAP and of LIME explanations of a 30-word prompt on the default model.

Default evaluation budget (ExplainSettings); the answer is the model's own greedy answer.
Target on a 2-core CPU machine: each method under 60 s.
Run with `make bench` (or `.venv/bin/python bench/explain.py --model PATH`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tqdm import tqdm  # noqa: E402

from core.audit.explain import ExplainService, ExplainSettings  # noqa: E402
from core.serving.models import ModelService  # noqa: E402
from core.serving.modelspec import ModelResolver  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.store import open_database  # noqa: E402
from core.store.arena import ArenaStore  # noqa: E402
from core.store.explain import ExplanationCache  # noqa: E402

PROMPT = (
    "My landlord wants to raise the rent by twenty percent next month without any written "
    "notice. Is that allowed where I live, and what should I say to him in my reply?"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    Settings.add_arguments(parser, only=("model", "cache_dir"))
    parser.add_argument("--max-evals", type=int, default=ExplainSettings.max_evals)
    args = parser.parse_args()
    import lime.lime_text  # noqa: F401  (imported once per process, like in the app)
    import shap  # noqa: F401

    models = ModelService(args.model, cache_dir=Settings.from_args(args).models_dir)
    with tempfile.TemporaryDirectory() as scratch:
        db = open_database(Path(scratch) / "bench.duckdb")
        service = ExplainService(ModelResolver(models, ArenaStore(db)), ExplanationCache(db))
        answer = service.generate_answer(PROMPT, max_new_tokens=48)
        words = len(PROMPT.split())
        print(f"model: {args.model} on {models.get().device}; prompt of {words} words; "
              f"answer of {len(answer.split())} words: {answer[:80]!r}")
        for method in ("shap", "lime"):
            settings = ExplainSettings(methods=(method,), max_evals=args.max_evals)
            with tqdm(total=2 + settings.max_evals, desc=method, leave=False) as bar:
                def advance(done: int, total: int, bar=bar) -> None:
                    bar.total = total
                    bar.update(done - bar.n)

                started = time.perf_counter()
                result = service.explain(PROMPT, answer, settings=settings, progress=advance,
                                         use_cache=False)
                seconds = time.perf_counter() - started
            top = ", ".join(f"{w} {v:+.3f}" for w, v in result.top_words(method, 3))
            print(f"{method.upper()}: {seconds:.1f} s for {result.evaluations} evaluations "
                  f"(budget {settings.max_evals}, batch {settings.batch_size})   "
                  f"(target < 60 s); top words: {top}")
        db.close()


if __name__ == "__main__":
    main()
