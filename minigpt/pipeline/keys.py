"""Cache keys of upstream products: a hash of what determines a product, and nothing else.

A product's key hashes its composed training config (or its sampling options) with three things left
out or rewritten, so that the key changes exactly when the product would:

* keys that say where a run writes and how it reports (`upstream.key_ignores`: paths, loggers, …);
* paths under the upstream cache become `<upstream>/<name>-<key>/…`: an upstream product enters its
  consumer's key through its own key (a changed pretrain config rebuilds the SFT model too), wherever the
  cache lives;
* a folder the user gave (`init_from=…`) is named by a hash of its files, so retraining into the same
  folder rebuilds what was built from it.

Interpolations are hashed as written (`${model.block_size}`), not resolved: what they point at is hashed
where it lives, and resolving would need Hydra's run folder, which an unbuilt product does not have.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

KEY_LENGTH = 16  # hex digits: 64 bits, ample for the handful of products a machine caches


def digest(value: Any) -> str:
    """A short sha256 of `value`'s canonical JSON (sorted keys)."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]


def folder_digest(folder: Path) -> str:
    """A short sha256 of the files directly inside `folder` (names and bytes): a given model's identity."""
    sha = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        sha.update(path.name.encode())
        sha.update(path.read_bytes())
    return sha.hexdigest()[:KEY_LENGTH]


def _drop(tree: dict[Any, Any], dotted: str) -> None:
    """Remove `a.b.c` from a nested dict, if it is there."""
    *parents, leaf = dotted.split(".")
    node: Any = tree
    for part in parents:
        node = node.get(part)
        if not isinstance(node, dict):
            return
    node.pop(leaf, None)


def _rewrite(value: Any, aliases: Mapping[str, str]) -> Any:
    """`value` with every string that starts with an aliased path prefix rewritten to its alias."""
    if isinstance(value, dict):
        return {key: _rewrite(item, aliases) for key, item in value.items()}
    if isinstance(value, list):
        return [_rewrite(item, aliases) for item in value]
    if isinstance(value, str):
        for prefix, alias in aliases.items():
            if value == prefix or value.startswith(prefix.rstrip("/") + "/"):
                return alias + value[len(prefix.rstrip("/")) :]
    return value


def config_key(cfg: DictConfig, ignores: Iterable[str], aliases: Mapping[str, str]) -> str:
    """The cache key of a training run's composed config (see the module docstring)."""
    tree = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(tree, dict)
    for dotted in ignores:
        _drop(tree, dotted)
    return digest(_rewrite(tree, aliases))


def options_key(options: Mapping[str, Any], aliases: Mapping[str, str]) -> str:
    """The cache key of a non-training product (e.g. preference pairs) from its options and sources."""
    return digest(_rewrite(dict(options), aliases))
