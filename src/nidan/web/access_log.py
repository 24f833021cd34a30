"""Access logging without secrets: query strings (a setup link's token, say) never reach the log."""

from __future__ import annotations

import copy
import logging
from typing import Any

from uvicorn.config import LOGGING_CONFIG


class RedactQueryString(logging.Filter):
    """Cuts the query string off the path in uvicorn's access records: ``(client, method, path, version, status)``."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (args[0], args[1], args[2].split("?", 1)[0] + "?[redacted]", args[3], args[4])
        return True


def logging_config() -> dict[str, Any]:
    """uvicorn's own logging set-up, with the access handler passing through ``RedactQueryString``."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_query"] = {"()": f"{__name__}.RedactQueryString"}
    config["handlers"]["access"]["filters"] = ["redact_query"]
    return config
