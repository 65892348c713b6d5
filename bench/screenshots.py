"""The README's pictures: the whole loop driven in Debian's Chromium on the default model.

Starts the app on loopback with a fresh data dir, uploads two small manuals, chats (grounded on
them) and rates, builds a dataset, trains with the quick preset, compares and votes, explains
and builds a bias report, saving one 1280x800 PNG per tab into docs/screenshots/.
Run with `.venv/bin/python bench/screenshots.py` (a few minutes on CPU); the e2e test drives the
same steps on a tiny model. Emoji need a colour emoji font (`apt-get install
fonts-noto-color-emoji`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MANUALS = {
    "kettle-manual.md": (
        "# Kettle K2 manual\n\nThe K2 kettle boils 1.7 litres in about four minutes. Descale it "
        "every month with white vinegar. The kettle has a two year warranty; keep the receipt.\n"
    ),
    "returns-policy.txt": (
        "Returns policy. Unused products can be returned within 30 days for a full refund. "
        "Support answers calls on weekdays from 9 to 17 and replies to email within a day.\n"
    ),
}
CHATS = [  # prompt, rater, stars, thumb, correction, tags
    ("How long is the warranty on the K2 kettle?", "dana", 5, "up", "", "warranty"),
    ("How do I descale the kettle?", "sam", 4, "up", "", "care"),
    ("Can I return the kettle after two weeks?", "dana", 2, "down",
     "Yes: unused products can be returned within 30 days for a full refund.", "returns"),
    ("When does support answer calls?", "sam", 3, "down", "", "support"),
]  # fmt: skip


def main() -> None:
    from playwright.sync_api import sync_playwright

    from core.settings import Settings
    from tests.e2e.conftest import CHROMIUM_ARGS, VIEWPORT, ensure_chromium
    from tests.e2e.loop import Loop
    from tests.e2e.served import ServedApp

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    Settings.add_arguments(parser, only=("model", "cache_dir"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    settings = Settings.from_args(args)
    os.environ["REFINERY_CACHE_DIR"] = str(settings.models_dir)  # the served studio reuses it
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        docs = Path(folder) / "docs"
        docs.mkdir()
        for name, text in MANUALS.items():
            (docs / name).write_text(text)
        browser = playwright.chromium.launch(
            executable_path=str(ensure_chromium()), headless=True, args=CHROMIUM_ARGS
        )
        with ServedApp(Path(folder) / "data", settings.model) as app:
            page = browser.new_context(viewport=VIEWPORT).new_page()
            page.goto(app.url + "/")
            loop = Loop(page, app.api, shots=args.out, long_ms=1_800_000)  # a busy CPU
            print("documents:", loop.upload_documents(sorted(docs.iterdir())), flush=True)
            for prompt, rater, stars, thumb, correction, tag in CHATS:
                print("chat:", loop.chat(prompt, max_new_tokens=48, grounded=True)[:80], flush=True)
                loop.user = rater
                loop.rate(stars=stars, thumb=thumb, correction=correction, tags=tag)
            loop.shot("02-chat")
            loop.review_feedback()
            print(loop.build_dataset("kettle-support"), flush=True)
            adapter = loop.train("kettle-support")
            print(loop.compare_and_vote("How long is the warranty on the K2 kettle?", adapter))
            loop.explain("How long is the warranty on the K2 kettle?")
            loop.bias_report()
        browser.close()
    for png in sorted(args.out.glob("*.png")):
        print(f"{png.relative_to(ROOT)}: {png.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
