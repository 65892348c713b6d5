"""The one error wrapper every tab uses: typed errors read as their message, others are logged."""

import logging

from core.errors import InvalidInput, NotFound
from ui.errors import UNEXPECTED, problem, shows_errors


def test_a_typed_error_shows_its_message_and_a_bug_shows_a_short_logged_line(caplog):
    @shows_errors(lambda message: (problem(message), None))
    def handler(kind):
        if kind == "typed":
            raise InvalidInput("pick a <dataset> first")
        if kind == "bug":
            raise KeyError("internal detail")
        return "ok", 1

    assert handler("fine") == ("ok", 1)
    assert handler("typed") == ("⚠️ pick a &lt;dataset&gt; first", None)
    with caplog.at_level(logging.ERROR, logger="refinery.ui"):
        assert handler("bug") == (f"⚠️ {UNEXPECTED}", None)
    assert "internal detail" in caplog.text  # the traceback goes to the log, not the page


def test_expected_errors_streams_and_inputs():
    @shows_errors(problem, expected=(ValueError,))
    def parse(text):
        return str(int(text))

    assert parse("7") == "7"
    assert parse("x").startswith("⚠️ invalid literal for int()")

    @shows_errors(lambda message, name: f"{name}: {message}", with_inputs=True)
    def lookup(name):
        raise NotFound(f"no {name}")

    assert lookup("job-1") == "job-1: no job-1"

    @shows_errors(lambda message: ("failed", message))
    def stream():
        yield "first", ""
        raise NotFound("gone")

    assert list(stream()) == [("first", ""), ("failed", "gone")]
