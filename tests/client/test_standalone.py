"""``nidan.client`` is for relying applications: it needs httpx and nothing else of nidan's dependencies."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nidan.client

SERVER_SIDE = ("fastapi", "starlette", "sqlalchemy", "pydantic", "alembic", "argon2", "cryptography", "uvicorn")


def run_python(code: str, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_the_client_loads_no_server_side_package() -> None:
    loaded = run_python(
        "import sys, nidan.client\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({SERVER_SIDE!r})))\n"
        "print(sorted(m for m in sys.modules if m.startswith('nidan')))"
    ).splitlines()
    assert loaded == ["[]", "['nidan', 'nidan.client']"]


def test_a_vendored_copy_works_on_its_own(tmp_path: Path) -> None:
    """Copied into an application as one file, it imports and works with nidan itself made unimportable."""
    shutil.copy(nidan.client.__file__, tmp_path / "nidan_client.py")
    answer = run_python(
        "import sys; sys.path.insert(0, '.'); sys.modules['nidan'] = None  # import nidan now fails\n"
        "import httpx, nidan_client\n"
        "body = {'ok': True, 'method': 'totp', 'username': 'a'}\n"
        "ok = httpx.MockTransport(lambda request: httpx.Response(200, json=body))\n"
        "print(nidan_client.Client('http://n', api_key='nidan_key_' + 'k' * 43, transport=ok).verify('a', '1').ok)",
        cwd=tmp_path,
    )
    assert answer == "True"


def test_the_public_names() -> None:
    """``__all__`` names every public class the module defines (and the ``VerifyMethod`` alias), nothing else."""
    defined = {
        name
        for name, value in vars(nidan.client).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == "nidan.client"
    }
    assert set(nidan.client.__all__) == defined | {"VerifyMethod"}
    assert all(hasattr(nidan.client, name) for name in nidan.client.__all__)
