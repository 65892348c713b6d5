"""How a tab shows a failed action: one short line, never a traceback.

`@shows_errors(on_error)` wraps an event handler (a plain function or a generator). A typed
error from core/errors.py (or another error the handler names in `expected`) becomes its own
message; anything else is logged with its traceback and shown as a short apology. `on_error`
gets that message and returns (or, for a generator, is yielded as) the handler's outputs, most
often with `problem(message)` as the status line; `warn` shows it as a toast instead.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable

import gradio as gr

from core.errors import RefineryError
from ui.markup import as_text

log = logging.getLogger("refinery.ui")
UNEXPECTED = "something went wrong; the server log has the details"


def message_of(error: BaseException, expected: tuple[type[BaseException], ...] = ()) -> str:
    """The text a person sees for this error (logged first when nobody expected it)."""
    if isinstance(error, RefineryError):
        return error.message
    if isinstance(error, expected):
        return str(error)
    log.error("UI action failed", exc_info=error)
    return UNEXPECTED


def problem(message: str) -> str:
    """The Markdown line that reports a failed action."""
    return f"⚠️ {as_text(message)}"


def warn(*outputs):
    """An on_error that shows the message as a toast and returns `outputs` (one or several)."""

    def shown(message: str):
        gr.Warning(message)
        return outputs[0] if len(outputs) == 1 else outputs

    return shown


def shows_errors(on_error: Callable[..., object], *,
                 expected: tuple[type[BaseException], ...] = (),
                 with_inputs: bool = False) -> Callable:
    """`with_inputs`: on_error also gets the handler's positional arguments."""

    def outputs(error: Exception, args: tuple):
        message = message_of(error, expected)
        return on_error(message, *args) if with_inputs else on_error(message)

    def wrap(handler: Callable) -> Callable:
        if inspect.isgeneratorfunction(handler):
            @functools.wraps(handler)
            def stream(*args, **kwargs):
                try:
                    yield from handler(*args, **kwargs)
                except Exception as error:
                    yield outputs(error, args)

            return stream

        @functools.wraps(handler)
        def call(*args, **kwargs):
            try:
                return handler(*args, **kwargs)
            except Exception as error:
                return outputs(error, args)

        return call

    return wrap
