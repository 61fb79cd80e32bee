"""LMS settings: environment variables with defaults, copied into the app config by `grader.lms.init_app`.

| variable | default | meaning |
|---|---|---|
| GRADER_LMS_RETRY_DELAYS | 60 s doubling, ≤ 4 h, 24 h in all | seconds between attempts, comma-separated |
| GRADER_LMS_TIMEOUT | 10 | seconds one outbound request (webhook, LTI service call) may take |
| GRADER_LMS_SECRET_GRACE | 86400 | seconds a rotated-out secret stays valid |
| GRADER_LMS_BACKDATE_LIMIT | 172800 | how far before its arrival a message's `submitted_at` may count (0: never) |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flask import Flask, current_app

from grader.config import ConfigError

DAY = 24 * 3600
YEAR = 366 * DAY


def exponential_delays(first: float = 60.0, cap: float = 4 * 3600.0, window: float = DAY) -> list[float]:
    """Delays first, 2·first, 4·first … (each at most `cap`) adding up to exactly `window` (a day)."""
    delays: list[float] = []
    total, delay = 0.0, first
    while total < window:
        step = min(delay, cap, window - total)
        delays.append(step)
        total += step
        delay *= 2
    return delays


def parse_delays(raw: str) -> list[float]:
    """`"0.1, 0.2"` → [0.1, 0.2]; every delay must be a non-negative number."""
    try:
        delays = [float(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"GRADER_LMS_RETRY_DELAYS must be comma-separated seconds, not {raw!r}") from None
    if any(d < 0 for d in delays):
        raise ConfigError("GRADER_LMS_RETRY_DELAYS must not be negative")
    return delays


def configure(app: Flask, environ: Mapping[str, str] | None = None) -> None:
    """Fill the LMS settings from the environment unless the app config (a test) already has them."""
    env = os.environ if environ is None else environ
    config = app.config
    if "GRADER_LMS_RETRY_DELAYS" not in config:
        raw = env.get("GRADER_LMS_RETRY_DELAYS")
        config["GRADER_LMS_RETRY_DELAYS"] = parse_delays(raw) if raw else exponential_delays()
    elif isinstance(config["GRADER_LMS_RETRY_DELAYS"], str):
        config["GRADER_LMS_RETRY_DELAYS"] = parse_delays(config["GRADER_LMS_RETRY_DELAYS"])
    for key, default in (("GRADER_LMS_TIMEOUT", 10.0), ("GRADER_LMS_SECRET_GRACE", float(DAY)),
                         ("GRADER_LMS_BACKDATE_LIMIT", float(2 * DAY))):
        value: Any = config.get(key, env.get(key) or default)
        try:
            config[key] = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a number of seconds, not {value!r}") from None
        if not 0 <= config[key] <= YEAR:  # also refuses nan and inf, which no clock arithmetic takes
            raise ConfigError(f"{key} must be between 0 and {YEAR:.0f} seconds (a year), not {value!r}")


def retry_delays() -> list[float]:
    """Seconds to wait after attempt 1, 2, …; attempts stop after len(delays) + 1."""
    return list(current_app.config["GRADER_LMS_RETRY_DELAYS"])


def timeout() -> float:
    """Seconds an outbound request may take."""
    return float(current_app.config["GRADER_LMS_TIMEOUT"])


def secret_grace() -> float:
    """Seconds a rotated-out secret stays valid."""
    return float(current_app.config["GRADER_LMS_SECRET_GRACE"])


def backdate_limit() -> timedelta:
    """How far before its arrival an LMS message's own `submitted_at` may count (two days by default: a Standard
    Webhooks sender retries one message for about a day)."""
    return timedelta(seconds=float(current_app.config["GRADER_LMS_BACKDATE_LIMIT"]))
