"""Log redaction: nothing shaped like one of our secrets reaches a log line.

The server never logs a credential itself; this catches the ones clients put where they
do not belong (a token in a query string ends up in the access log otherwise).
"""

from __future__ import annotations

import copy
import logging
import re

SECRET_RE = re.compile(r"(art_v1_|art_v2_[xeuf]_)[0-9a-fA-F]{8,}|artd_[0-9A-Za-z]{8,}")


def redact(text: str) -> str:
    return SECRET_RE.sub(lambda m: m.group(0)[:7] + "[REDACTED]" if m.group(0).startswith("art_") else
                         "artd_[REDACTED]", text)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - never let logging fail
            return True
        if SECRET_RE.search(message):
            record.msg = redact(message)
            record.args = ()
        return True


def uvicorn_log_config() -> dict:
    """uvicorn's logging configuration with the redaction filter on every handler."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact"] = {"()": "artifactd.logsafe.RedactSecrets"}
    for handler in config.get("handlers", {}).values():
        handler.setdefault("filters", []).append("redact")
    return config


def install_root() -> None:
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactSecrets())
