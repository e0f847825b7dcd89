"""Conversations from JSONL files, validated line by line (every error names the file and line).

Two line formats are accepted:

    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    {"prompt": "hi", "completion": "hello"}

Roles are `system`, `user` and `assistant`; at least one assistant turn must be present (otherwise the
line would contribute no loss). Blank lines are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from minigpt.tokenizer.chat import ROLES
from minigpt.utils.errors import ConfigError, DataError

Conversation = list[dict[str, str]]
T = TypeVar("T")


def parse_conversation(record: Any) -> Conversation:
    """One decoded JSON line → a list of messages; `ValueError` with the reason if malformed."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError('"messages" must be a non-empty list')
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or set(message) < {"role", "content"}:
                raise ValueError(f'message {i} must be an object with "role" and "content"')
            if message["role"] not in ROLES:
                raise ValueError(f"message {i} has role {message['role']!r}; use one of {list(ROLES)}")
            if not isinstance(message["content"], str):
                raise ValueError(f'message {i} "content" must be a string')
        if not any(m["role"] == "assistant" for m in messages):
            raise ValueError("there is no assistant message to learn from")
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    if "prompt" in record and "completion" in record:
        if not isinstance(record["prompt"], str) or not isinstance(record["completion"], str):
            raise ValueError('"prompt" and "completion" must be strings')
        return [
            {"role": "user", "content": record["prompt"]},
            {"role": "assistant", "content": record["completion"]},
        ]
    raise ValueError('expected {"messages": [...]} or {"prompt": ..., "completion": ...}')


def read_jsonl(path: str | Path, parse: Callable[[Any], T], what: str = "conversations") -> list[tuple[int, T]]:
    """(line number, `parse(record)`) for every line of a JSONL file; a `DataError` names a bad line.

    `parse` raises `ValueError` with the reason for a malformed record; `what` names the records in errors.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        state = "is a folder" if path.is_dir() else "does not exist"
        raise ConfigError(f"data.path={str(path)!r} {state}; point it at a .jsonl file of {what}.")
    records: list[tuple[int, T]] = []
    for lineno, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DataError(path, "not UTF-8 text; save the file as UTF-8.", lineno) from None
        if not line.strip():
            continue
        try:
            records.append((lineno, parse(json.loads(line))))
        except ValueError as err:  # json.JSONDecodeError is a ValueError too
            raise DataError(path, f"{err}; fix or remove that line.", lineno) from None
    if not records:
        raise DataError(path, f"holds no {what}; add JSONL lines.")
    return records


def read_chat_jsonl(path: str | Path) -> list[tuple[int, Conversation]]:
    """(line number, conversation) for every line of a JSONL file; a `DataError` names a malformed line."""
    return read_jsonl(path, parse_conversation)
