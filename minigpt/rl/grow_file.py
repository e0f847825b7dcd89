"""A Grow step's dataset as a chat JSONL file: every sampled reply with its reward (and gold score).

One line per reply, readable by people and reusable as SFT data (`data=chat_jsonl data.path=<file>`,
which reads `messages` and ignores the other keys):

    {"messages": [{"role": "user", "content": "what is 3 plus 4?"}, {"role": "assistant", "content": "7"}],
     "reward": 1.0, "gold": 1.0, "task": "arithmetic"}

The file is written atomically, so one that exists is complete: a resumed ReST run reuses it instead of
sampling the Grow step again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from minigpt.data.chat_files import parse_conversation, read_jsonl
from minigpt.rl.rest_filter import ScoredReply
from minigpt.utils.io import atomic_write_text


def reply_record(reply: ScoredReply) -> dict[str, Any]:
    """The JSON object of one reply: the conversation, then its scores."""
    messages = [{"role": "user", "content": reply.prompt}, {"role": "assistant", "content": reply.reply}]
    return {"messages": messages, "reward": reply.reward, "gold": reply.gold, "task": reply.task}


def parse_reply(record: Any) -> ScoredReply:
    """One JSON line → a `ScoredReply`; `ValueError` with the reason if malformed."""
    messages = parse_conversation(record)
    if [m["role"] for m in messages] != ["user", "assistant"] or not isinstance(record.get("reward"), (int, float)):
        raise ValueError('expected one user and one assistant message and a numeric "reward"')
    gold = record.get("gold")
    return ScoredReply(messages[0]["content"], messages[1]["content"], float(record["reward"]), record.get("task"),
                       None if gold is None else float(gold))  # fmt: skip


def write_grow_file(path: Path, replies: Sequence[ScoredReply]) -> None:
    """Write the replies, one JSON line each, atomically."""
    atomic_write_text(path, "".join(json.dumps(reply_record(r), ensure_ascii=False) + "\n" for r in replies))


def read_grow_file(path: Path) -> list[ScoredReply]:
    """The replies of a file `write_grow_file` wrote (a `DataError` names a malformed line)."""
    return [reply for _, reply in read_jsonl(path, parse_reply, what="scored replies")]
