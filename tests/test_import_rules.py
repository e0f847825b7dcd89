"""The one-way import rule (`DESIGN.md`): the network, the losses, the tokenizers and generation import
nothing of the stages, the data, the RL loop or Lightning.

Checked twice: on the source, every import statement of every module (lazy ones inside functions too),
followed through the package's own modules, so that a helper in between does not hide a forbidden
import; and at run time, a fresh interpreter imports each module in turn and looks in `sys.modules` for
what arrived with it (which also sees imports that no statement names, e.g. `importlib`). Both checkers
are first shown to catch a broken rule on a small package written for the purpose.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from collections import deque
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("minigpt.model", "minigpt.losses", "minigpt.tokenizer", "minigpt.inference")
FORBIDDEN = ("minigpt.stages", "minigpt.data", "minigpt.rl", "lightning", "pytorch_lightning", "lightning_fabric")


def _matches(name: str, prefixes: tuple[str, ...]) -> bool:
    """Whether module `name` is one of `prefixes` or inside one."""
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def source_modules(root: Path, package: str) -> dict[str, Path]:
    """Every module of `package` under `root`, by dotted name (a package by its `__init__.py`)."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def imports_of(name: str, path: Path) -> set[str]:
    """The modules that `path` (module `name`) may import: every `import` and `from … import` in it.

    `from a.b import c` yields `a.b` and `a.b.c` (c may be a submodule); relative imports are resolved.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def static_violations(root: Path, package: str, checked: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    """Import chains from a `checked` module to a `forbidden` one, following the package's own modules."""
    modules = source_modules(root, package)
    graph = {name: imports_of(name, path) for name, path in modules.items()}
    found = []
    for start in sorted(name for name in modules if _matches(name, checked)):
        seen, queue = {start}, deque([[start]])
        while queue:
            chain = queue.popleft()
            for target in sorted(graph.get(chain[-1], ())):
                if _matches(target, forbidden):
                    found.append(" → ".join([*chain, target]))
                elif target in modules and target not in seen:
                    seen.add(target)
                    queue.append([*chain, target])
    return found


# Run in a fresh interpreter: import the given modules one at a time, and report which of the forbidden
# packages each one was the first to bring into sys.modules.
_PROBE = textwrap.dedent(
    """
    import importlib, json, sys
    names, forbidden = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    def loaded():
        return {f for f in forbidden for m in sys.modules if m == f or m.startswith(f + ".")}
    report, before = {}, loaded()
    for name in names:
        importlib.import_module(name)
        now = loaded()
        if now - before:
            report[name] = sorted(now - before)
        before = now
    print(json.dumps(report))
    """
)


def runtime_violations(
    root: Path, package: str, checked: tuple[str, ...], forbidden: tuple[str, ...]
) -> dict[str, list[str]]:
    """{module: forbidden packages its import loaded}, importing every `checked` module in a fresh interpreter."""
    names = sorted(name for name in source_modules(root, package) if _matches(name, checked))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(names), json.dumps(forbidden)],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def broken_package(tmp_path: Path) -> Path:
    """A package whose `core` breaks the rule through a helper, lazily, inside a function."""
    files = {
        "pkg/__init__.py": "",
        "pkg/core/__init__.py": "from pkg.core.net import Net\n",
        "pkg/core/net.py": "from ..util import helper\n\nclass Net:\n    pass\n",
        "pkg/core/clean.py": "import json\n",
        "pkg/util.py": "def helper():\n    from pkg.stages import loop\n    return loop\n\nimport pkg.stages\n",
        "pkg/stages/__init__.py": "loop = 1\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_the_static_checker_finds_a_forbidden_import_behind_a_helper(broken_package: Path) -> None:
    found = static_violations(broken_package, "pkg", ("pkg.core",), ("pkg.stages",))
    assert "pkg.core.net → pkg.util → pkg.stages" in found
    assert "pkg.core → pkg.core.net → pkg.util → pkg.stages" in found
    assert not any(chain.startswith("pkg.core.clean") for chain in found)


def test_the_runtime_checker_sees_what_an_import_brings_in(broken_package: Path) -> None:
    found = runtime_violations(broken_package, "pkg", ("pkg.core",), ("pkg.stages",))
    assert found == {"pkg.core": ["pkg.stages"]}  # the package's import pulls in net and util with it


def test_model_losses_tokenizer_inference_import_no_stage_data_rl_or_lightning_in_the_source() -> None:
    found = static_violations(ROOT, "minigpt", CHECKED, FORBIDDEN)
    assert not found, "import rule broken (DESIGN.md):\n" + "\n".join(found)


@pytest.mark.slow
def test_model_losses_tokenizer_inference_load_no_stage_data_rl_or_lightning() -> None:
    found = runtime_violations(ROOT, "minigpt", CHECKED, FORBIDDEN)
    assert not found, f"import rule broken at import time (DESIGN.md): {found}"
