"""The whole loop driven through the UI in a real browser, one method per step.

Used by tests/e2e/test_browser_loop.py (tiny model, asserts every step) and by
bench/screenshots.py (the README's pictures, taken with `shot`).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import httpx
from playwright.sync_api import Locator, Page, expect

# Sub-tabs and the stage (top-level tab) that holds them; ui/layout.py builds this order.
STAGES = ["Start", "Documents", "Chat", "Curate", "Training", "Compare & evaluate", "Audit",
          "Operate"]
STAGE_OF = {**dict.fromkeys(["Feedback", "Datasets", "Logs"], "Curate"),
            **dict.fromkeys(["Train", "Tune", "Retriever"], "Training"),
            **dict.fromkeys(["Compare", "Evaluate", "Knowledge"], "Compare & evaluate"),
            **dict.fromkeys(["Explain", "Bias", "Monitor"], "Audit"),
            **dict.fromkeys(["Models", "Routing", "Automation", "Dashboard"], "Operate")}
LONG_MS = 240_000  # a step that trains or explains on a 2-core CPU
expect.set_options(timeout=60_000)  # a busy 2-core machine: every UI round trip can lag


@dataclass
class Loop:
    page: Page
    api: str
    shots: Path | None = None
    user: str = "dana"
    long_ms: int = LONG_MS  # for steps that generate, train or explain

    # ---- helpers ---------------------------------------------------------------------------

    def open_tab(self, name: str) -> Locator:
        """Select a stage or a stage's sub-tab (its stage first) and return the innermost
        visible panel."""
        self.page.get_by_role("tab").first.wait_for()  # the page has rendered its tab bar
        if name in STAGE_OF:
            self.select_tab(STAGE_OF[name])
        return self.select_tab(name)

    def select_tab(self, name: str) -> Locator:
        panels = self.page.locator("[role=tabpanel]:visible")
        tab = self.page.get_by_role("tab", name=name, exact=True)
        if tab.get_attribute("aria-selected") != "true":
            before = panels.last.element_handle() if panels.count() else None
            tab.click()
            expect(tab).to_have_attribute("aria-selected", "true")
            if before is not None:
                before.wait_for_element_state("hidden")
        return panels.last

    def radios(self, panel: Locator, label: str) -> Locator:
        """The radio group (a fieldset) whose label is exactly `label`."""
        title = self.page.get_by_test_id("block-info").get_by_text(label, exact=True)
        return panel.locator("fieldset").filter(has=title).last

    def field(self, panel: Locator, label: str) -> Locator:
        return panel.get_by_label(label, exact=True).first

    def choose(self, panel: Locator, label: str, option: str) -> None:
        """Pick `option` in a Gradio dropdown (a combobox with a list of options)."""
        box = self.field(panel, label)
        box.click()
        self.page.get_by_role("option", name=re.compile(re.escape(option))).first.click()
        self.page.keyboard.press("Escape")

    def set_number(self, panel: Locator, label: str, value: float) -> None:
        """A gr.Number, or the number box beside a gr.Slider."""
        name = re.compile(rf"^(number input for )?{re.escape(label)}$")
        box = panel.get_by_role("spinbutton", name=name).first
        box.fill(str(value))
        box.press("Tab")

    def status_text(self, panel: Locator, pattern: str, timeout: int = 60_000) -> str:
        found = panel.get_by_text(re.compile(pattern)).first
        expect(found).to_be_visible(timeout=timeout)
        return found.inner_text()

    def shot(self, name: str, *, top: Locator | None = None) -> None:
        """A viewport-sized PNG (scrolled to `top`, else the page top), reduced to a palette
        so it stays small enough to commit."""
        if self.shots is None:
            return
        from PIL import Image

        self.shots.mkdir(parents=True, exist_ok=True)
        self.page.mouse.move(0, 0)
        self.page.evaluate("window.scrollTo(0, 0)")
        if top is not None:
            top.evaluate("element => element.scrollIntoView()")
        image = Image.open(io.BytesIO(self.page.screenshot()))
        image.convert("RGB").quantize(colors=128).save(self.shots / f"{name}.png", optimize=True)

    def set_user(self, name: str) -> None:
        """The header's name box: every tab records actions under it."""
        box = self.page.get_by_label("Your name", exact=True)
        box.fill(name)
        box.press("Tab")

    def get(self, path: str, **params) -> dict:
        reply = httpx.get(f"{self.api}{path}", params=params, timeout=30)
        reply.raise_for_status()
        return reply.json()

    # ---- the loop --------------------------------------------------------------------------

    def upload_documents(self, files: list[Path]) -> str:
        panel = self.open_tab("Documents")
        panel.locator("input[type=file]").first.set_input_files([str(f) for f in files])
        expect(panel.get_by_role("cell", name=files[-1].name).first).to_be_visible()
        panel.get_by_role("button", name="Ingest", exact=True).click()
        results = self.field(panel, "Per-file results")
        expect(results).to_have_value(
            re.compile(rf"{len(files)} of {len(files)} file\(s\) ingested"), timeout=self.long_ms
        )
        self.choose(panel, "Document", files[0].name)
        expect(panel.get_by_text(re.compile(r"\d+ chunk\(s\)"))).to_be_visible()
        return results.input_value()

    def chat(self, prompt: str, *, max_new_tokens: int | None = None, grounded: bool = False
             ) -> str:
        panel = self.open_tab("Chat")
        if max_new_tokens is not None:
            self.set_number(panel, "Max new tokens", max_new_tokens)
        panel.get_by_label("Ground on documents").set_checked(grounded)
        before = panel.get_by_test_id("bot").count()
        box = self.field(panel, "Message")
        box.fill(prompt)
        box.press("Enter")
        answer = panel.get_by_test_id("bot").nth(before)
        expect(answer).to_be_visible(timeout=self.long_ms)
        expect(panel.get_by_text("Generating…")).to_have_count(0, timeout=self.long_ms)
        expect(panel.get_by_text(re.compile(r"tokens/s · confidence"))).to_be_visible()
        return answer.inner_text()

    def rate(self, *, stars: int, thumb: str, correction: str = "", tags: str = "") -> str:
        panel = self.open_tab("Chat")
        self.set_user(self.user)
        self.radios(panel, "Stars").get_by_role("radio", name=str(stars), exact=True).check()
        self.radios(panel, "Thumb").get_by_role("radio", name=thumb, exact=True).check()
        self.field(panel, "Tags (comma-separated)").fill(tags)
        self.field(panel, "Corrected answer (optional)").fill(correction)
        panel.get_by_role("button", name="Save rating").click()
        newest = panel.get_by_test_id("bot").count()  # the answer just given is selected
        return self.status_text(panel, rf"Saved for answer #{newest}\.")

    def review_feedback(self) -> Locator:
        panel = self.open_tab("Feedback")
        panel.get_by_role("button", name="Apply filters").click()
        self.status_text(panel, r"rated row\(s\) · page 1")
        return panel

    def build_dataset(self, name: str) -> str:
        panel = self.open_tab("Datasets")
        self.field(panel, "Name").fill(name)
        self.radios(panel, "Kind").get_by_role("radio", name="sft", exact=True).check()
        self.set_number(panel, "Validation share", 0)
        panel.get_by_role("button", name="Build dataset").click()
        built = self.status_text(panel, r"built \S+", timeout=self.long_ms)
        return built

    def train(self, dataset_name: str) -> str:
        panel = self.open_tab("Train")  # the new dataset is listed without a refresh
        self.choose(panel, "Dataset version", dataset_name)
        self.choose(panel, "Preset", "quick test")
        expect(panel.get_by_text(re.compile(r"Estimate: \d+ steps"))).to_be_visible()
        panel.get_by_role("button", name="Train", exact=True).click()
        done = self.status_text(panel, r"Registered as \S+", timeout=self.long_ms)
        expect(panel.get_by_text("succeeded").first).to_be_visible()
        return done.split("Registered as", 1)[1].split()[0].strip("*")

    def compare_and_vote(self, prompt: str, adapter: str) -> str:
        panel = self.open_tab("Compare")
        panel.get_by_role("button", name="↻ Models").click()
        self.choose(panel, "Model B", adapter)
        self.field(panel, "Prompt").fill(prompt)
        panel.get_by_role("button", name="Compare", exact=True).click()
        self.status_text(panel, "Vote below", timeout=self.long_ms)
        panel.get_by_role("button", name="Right is better ➡️").click()
        voted = self.status_text(panel, r"Vote saved")
        return voted

    def explain(self, prompt: str, *, shot: str = "05-audit") -> Locator:
        panel = self.open_tab("Explain")
        self.field(panel, "Prompt").fill(prompt)
        self.set_number(panel, "Evaluations per method", 16)
        panel.get_by_role("button", name="Explain", exact=True).click()
        done = panel.get_by_text(re.compile(r"^Done\.$"))
        expect(done).to_be_visible(timeout=self.long_ms)
        expect(panel.get_by_text(re.compile(r"SHAP-LIME rank agreement")).first).to_be_visible()
        self.shot(shot, top=done)
        return panel

    def bias_report(self) -> Locator:
        panel = self.open_tab("Bias")
        self.set_number(panel, "Bootstrap resamples", 0)
        panel.get_by_role("button", name="Build report").click()
        self.status_text(panel, r"Groups marked", timeout=self.long_ms)
        parity = panel.get_by_text(re.compile("demographic parity difference")).first
        expect(parity).to_be_visible()
        return panel
