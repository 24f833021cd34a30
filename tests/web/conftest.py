from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.web.app import create_app


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as test_client:
        yield test_client
