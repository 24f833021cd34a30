"""``nidan.core`` is the protocol core: importing it must not pull in a framework, the database or I/O.

The import-linter contracts in pyproject.toml (``lint-imports`` in scripts/test) check the imports nidan's own modules
make. This test checks what importing core loads at run time, so it also sees a framework that an outside library
core uses would pull in, which the contracts cannot see."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

FORBIDDEN = (
    "fastapi",
    "starlette",
    "sqlalchemy",
    "pydantic",
    "nidan.db",
    "nidan.web",
    "nidan.services",
    "nidan.adapters",
    "nidan.config",
)

#: Modules that exist today; the walk must find at least these (new ones are picked up automatically).
KNOWN = {"nidan.core.audit", "nidan.core.otpauth", "nidan.core.passwords", "nidan.core.recovery", "nidan.core.totp"}

_PROBE = """
import importlib, json, pkgutil, sys
import nidan.core

def fail(name):
    raise RuntimeError(f"cannot import package {name}")

imported = []
for info in pkgutil.walk_packages(nidan.core.__path__, "nidan.core.", onerror=fail):
    importlib.import_module(info.name)
    imported.append(info.name)
print(json.dumps({"imported": imported, "modules": sorted(sys.modules)}))
"""


def _probe(tmp_path: Path) -> dict[str, list[str]]:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    probe: dict[str, list[str]] = json.loads(result.stdout)
    return probe


def _offenders(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]


def test_every_core_module_is_importable_without_framework_or_database(tmp_path: Path) -> None:
    probe = _probe(tmp_path)
    assert set(probe["imported"]) >= KNOWN
    assert all(name in probe["modules"] for name in probe["imported"])
    assert _offenders(probe["modules"]) == []


def test_offender_check_recognises_forbidden_modules() -> None:
    # The check above would pass vacuously if the matching were wrong.
    assert _offenders(["fastapi.routing", "sqlalchemy", "nidan.web.app", "nidan.services.totp"]) == [
        "fastapi.routing",
        "sqlalchemy",
        "nidan.web.app",
        "nidan.services.totp",
    ]
    assert _offenders(["nidan.core.totp", "nidan.webauthn_helpers", "starlette_like", "json"]) == []


def test_core_never_sleeps() -> None:
    # Waiting belongs to the faces and services (an event loop awaits, a CLI thread sleeps): a core function that
    # slept would hold whichever of them called it, the event loop included.
    core = Path(__file__).resolve().parents[2] / "src" / "nidan" / "core"
    sleepers = [
        f"{path.name}:{node.lineno}"
        for path in sorted(core.glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute | ast.Name)
        and (getattr(node, "attr", None) or getattr(node, "id", "")) == "sleep"
    ]
    assert sleepers == []
