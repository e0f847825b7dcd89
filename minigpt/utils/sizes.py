"""Sizes written the way people write them: `256MB`, `24GiB`, `8e10`."""

from __future__ import annotations

import re

from minigpt.utils.errors import ConfigError

_UNITS = {"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_bytes(text: object, field: str = "size") -> float:
    """`80GB` → 8e10, `24GiB` → 24·2³⁰, `1e9` → 1e9; a `ConfigError` naming `field` for anything else."""
    match = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    if match is None or match.group(2).upper() not in _UNITS:
        raise ConfigError(f"{field}={text} is not a size; write it like 80GB, 24GiB or 8e10.")
    return float(match.group(1)) * _UNITS[match.group(2).upper()]
