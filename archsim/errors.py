"""The one user-facing exception: every bad input becomes a ConfigError naming file, field and expectation."""
from __future__ import annotations


class ConfigError(Exception):
    """A user input (YAML file, CLI flag, API argument) is invalid.

    ``str(err)`` is one line: ``FILE: FIELD.PATH: expected EXPECTED, got GOT``.
    The CLI prints exactly that line and exits with status 2.
    """

    def __init__(self, file: str | None, path: str | None, expected: str, got: object = None):
        self.file = file or "<input>"
        self.path = path or "<root>"
        self.expected = expected
        self.got = got
        # args are the constructor's arguments, so copies made from them (pickle for worker processes,
        # simpy re-raising a process's exception) rebuild the same error; str() is the one-line message.
        super().__init__(file, path, expected, got)

    def __str__(self) -> str:
        got = "" if self.got is None else f", got {_short(self.got)}"
        return _one_line(f"{self.file}: {self.path}: expected {self.expected}{got}")


def _one_line(text: str) -> str:
    """Escape line breaks and other control characters (a YAML key may contain them) to keep one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
