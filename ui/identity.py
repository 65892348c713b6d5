"""One user name per browser session: the login name when login is on, else the name typed once
in the header (remembered in the browser). Every rating, vote, label, promotion and training run
is recorded under it."""

from __future__ import annotations

import gradio as gr

from core.operations.auth import session_user

STORAGE_KEY = "refinery-user-name"


def user_name(typed: str | None, request: gr.Request | None) -> str:
    """Who acts: the logged-in user, else the header's name, else "anonymous"."""
    login = getattr(request, "username", None) if request is not None else None
    return session_user(login, (typed or "").strip()[:100])


class Identity:
    """The header's name box; pass `identity.box` as an input and resolve it with user_name()."""

    def __init__(self) -> None:
        self.box = gr.Textbox(label="Your name", placeholder="who rates, votes and trains",
                              max_lines=1, scale=0, min_width=220, elem_id="user-name")
        self.saved = gr.BrowserState("", storage_key=STORAGE_KEY)

    def wire(self, page: gr.Blocks) -> None:
        def restore(request: gr.Request, saved: str, typed: str):
            login = getattr(request, "username", None)
            if login:  # the login decides; the box only shows it
                return gr.update(value=login, interactive=False, label="Logged in as")
            # Never clear or overwrite what was typed while the page loaded.
            return gr.update(value=saved) if saved and not (typed or "").strip() else gr.skip()

        page.load(restore, [self.saved, self.box], self.box)
        self.box.change(lambda name: (name or "").strip(), self.box, self.saved)
