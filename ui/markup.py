"""Show user and model text in Markdown-rendering components as text, never as live HTML.

HTML outside code is escaped (so `<script>` or `<img onerror=...>` shows as typed); code spans
and fenced blocks are left alone because the Markdown renderer already escapes them.
"""

from __future__ import annotations

import html
import re

from core.documents.grounding import label

# Fenced blocks start a line (up to an unclosed end, as Markdown does); spans pair backtick runs.
CODE = re.compile(r"^ {0,3}(```|~~~).*?(?:^ {0,3}\1|\Z)|(`+)[^`]*?\2", re.S | re.M)


def as_text(text: str) -> str:
    parts, last = [], 0
    for match in CODE.finditer(text):
        parts += [html.escape(text[last : match.start()], quote=False), match.group(0)]
        last = match.end()
    parts.append(html.escape(text[last:], quote=False))
    return "".join(parts)


def as_text_messages(messages: list[dict]) -> list[dict]:
    """A chat history for gr.Chatbot with every message's content made safe to show."""
    return [{**message, "content": as_text(message["content"])} for message in messages]


def short_model(name: str | None) -> str:
    """A model's short name: the last part of a hub id or folder path."""
    return (name or "").rstrip("/").rsplit("/", 1)[-1]


def short_id(value: str, keep: int = 14) -> str:
    return value if len(value) <= keep + 1 else value[:keep] + "…"


MARKDOWN = re.compile(r"([\\`*_\[\]#+\-!|~.])")


def as_plain_text(text: str) -> str:
    """Text shown exactly as written in Markdown: no HTML, and no Markdown either (a document's
    "# Title" or "1." stays text rather than becoming a heading or a list)."""
    return MARKDOWN.sub(r"\\\1", html.escape(text, quote=False))


def sources_markdown(heading: str, sources, *, excerpt_chars: int = 240) -> str:
    """Numbered sources as Markdown, numbered as in the prompt and the answer's [n] markers."""
    lines = [heading]
    for number, hit in enumerate(sources, start=1):
        excerpt = " ".join(hit.text.split())
        if len(excerpt) > excerpt_chars:
            excerpt = excerpt[:excerpt_chars].rstrip() + " …"
        lines.append(f"**[{number}]** {as_plain_text(label(hit))} · score {hit.score:.2f}  \n"
                     f"{as_plain_text(excerpt)}")
    return "\n\n".join(lines)
