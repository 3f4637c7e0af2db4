"""Request traces from CSV or JSONL files (arrival_s, prompt_tokens, output_tokens[, cached_tokens])."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from archsim.errors import ConfigError
from archsim.serving.requests import Request

REQUIRED = ("arrival_s", "prompt_tokens", "output_tokens")
OPTIONAL = ("cached_tokens",)


def load_trace(path: str | Path) -> list[Request]:
    """Read a trace; rows are sorted by arrival. Any bad row raises ConfigError naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), None, "an existing trace file (.csv or .jsonl)", "no such file")
    if path.suffix == ".csv":
        rows = _csv_rows(path, _text(path))
    elif path.suffix in (".jsonl", ".ndjson"):
        rows = _jsonl_rows(path, _text(path))
    else:
        raise ConfigError(str(path), None, "a .csv or .jsonl trace file", path.suffix or "no suffix")
    requests = [_request(path, line, row) for line, row in rows]
    if not requests:
        raise ConfigError(str(path), None, "at least one request row", "no rows")
    requests.sort(key=lambda r: (r.arrival_s, r.id))
    return [Request(id=i, arrival_s=r.arrival_s, prompt_tokens=r.prompt_tokens, output_tokens=r.output_tokens,
                    cached_tokens=r.cached_tokens) for i, r in enumerate(requests)]


def _text(path: Path) -> str:
    """The file as UTF-8 text; binary data or another encoding is a ConfigError, not a decode traceback."""
    data = path.read_bytes()
    if b"\0" in data:
        raise ConfigError(str(path), None, "a UTF-8 text trace file", "binary data (NUL bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(str(path), None, "a UTF-8 text trace file", f"invalid UTF-8 at byte {err.start}") from None


def _csv_rows(path: Path, text: str):
    reader = csv.DictReader(io.StringIO(text, newline=""))
    for row in reader:
        if None in row:
            raise ConfigError(str(path), f"line {reader.line_num}", "as many fields as the header", row[None])
        yield reader.line_num, row


def _unique_fields(path: Path, number: int):
    def hook(pairs: list[tuple[str, object]]) -> dict:
        out: dict = {}
        for key, value in pairs:
            if key in out:  # json.loads would keep the last silently
                raise ConfigError(str(path), f"line {number}.{key}", "each field once", "a duplicate field")
            out[key] = value
        return out
    return hook


def _jsonl_rows(path: Path, text: str):
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line, object_pairs_hook=_unique_fields(path, number))
        except json.JSONDecodeError as err:
            raise ConfigError(str(path), f"line {number}", "one JSON object per line", err.msg) from None
        if not isinstance(row, dict):
            raise ConfigError(str(path), f"line {number}", "a JSON object", type(row).__name__)
        yield number, row


def _request(path: Path, line: int, row: dict) -> Request:
    unknown = sorted(set(row) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise ConfigError(str(path), f"line {line}.{unknown[0]}", f"only the fields {REQUIRED + OPTIONAL}", unknown[0])
    values = {}
    for name in REQUIRED + OPTIONAL:
        if name not in row:
            if name in OPTIONAL:
                continue
            raise ConfigError(str(path), f"line {line}.{name}", "a value", "missing")
        values[name] = _number(path, line, name, row[name])
    request = Request(id=line, arrival_s=float(values["arrival_s"]), prompt_tokens=int(values["prompt_tokens"]),
                      output_tokens=int(values["output_tokens"]), cached_tokens=int(values.get("cached_tokens", 0)))
    if request.arrival_s < 0:
        raise ConfigError(str(path), f"line {line}.arrival_s", "a time >= 0 s", request.arrival_s)
    if request.prompt_tokens < 1 or request.output_tokens < 1:
        raise ConfigError(str(path), f"line {line}", "prompt_tokens >= 1 and output_tokens >= 1",
                          (request.prompt_tokens, request.output_tokens))
    if not 0 <= request.cached_tokens < request.prompt_tokens:
        raise ConfigError(str(path), f"line {line}.cached_tokens", "0 <= cached_tokens < prompt_tokens",
                          request.cached_tokens)
    return request


def _number(path: Path, line: int, name: str, value: object) -> float:
    if isinstance(value, bool):  # JSON true/false are not counts (float(True) would read as 1)
        raise ConfigError(str(path), f"line {line}.{name}", "a number", value)
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(str(path), f"line {line}.{name}", "a number", value) from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ConfigError(str(path), f"line {line}.{name}", "a finite number", value)
    if name != "arrival_s" and number != int(number):
        raise ConfigError(str(path), f"line {line}.{name}", "an integer token count", value)
    return number
