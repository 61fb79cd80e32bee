"""Configuration from environment variables, with defaults that run on one machine with nothing installed.

Embedded default (nothing set): a SQLite file, kombu's filesystem broker and the submission store all live under
`GRADER_HOME` (default `./instance`). Production sets `DATABASE_URL` (PostgreSQL) and `BROKER_URL` (Redis).
Every setting is a plain Flask config key, so `create_app(test_config)` can override any of them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A setting is missing or inconsistent (reported on one line by the CLI)."""


def grader_home(environ: Mapping[str, str] | None = None) -> Path:
    """The absolute GRADER_HOME folder (not created here)."""
    environ = os.environ if environ is None else environ
    return Path(environ.get("GRADER_HOME") or "instance").expanduser().resolve()


def load_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read the settings from `environ` (default: the process environment); None means "derive a default"."""
    env = os.environ if environ is None else environ
    database_url = env.get("DATABASE_URL")
    return {
        "GRADER_HOME": str(grader_home(env)),
        "SQLALCHEMY_DATABASE_URI": database_url or None,
        "BROKER_URL": env.get("BROKER_URL") or "filesystem://",
        "RESULT_BACKEND": env.get("RESULT_BACKEND") or None,
        "SECRET_KEY": env.get("SECRET_KEY") or None,  # filled from GRADER_HOME by ensure_secret_key
        "SUBMISSIONS_DIR": env.get("SUBMISSIONS_DIR") or None,
        "GRADER_ASSIGNMENTS": env.get("GRADER_ASSIGNMENTS") or None,  # None: the engine's default_root()
        "GRADER_RUNNER": env.get("GRADER_RUNNER") or "auto",
        "GRADER_MAX_UPLOAD_BYTES": _int(env, "GRADER_MAX_UPLOAD_BYTES", 1_048_576),
        "GRADER_UPLOAD_RATE_LIMIT": env.get("GRADER_UPLOAD_RATE_LIMIT") or "10 per minute",
        "RATELIMIT_STORAGE_URI": env.get("RATELIMIT_STORAGE_URI") or None,
        "GRADER_TASK_SOFT_TIME_LIMIT": _int(env, "GRADER_TASK_SOFT_TIME_LIMIT", 840),
        "GRADER_TASK_TIME_LIMIT": _int(env, "GRADER_TASK_TIME_LIMIT", 900),
        "GRADER_VISIBILITY_TIMEOUT": _int(env, "GRADER_VISIBILITY_TIMEOUT", 3600),
        "GRADER_MAX_RETRIES": _int(env, "GRADER_MAX_RETRIES", 5),
        "GRADER_RETRY_BACKOFF": _int(env, "GRADER_RETRY_BACKOFF", 15),
        # A worker asks its runner this often whether it can grade, and takes no gradings while it cannot.
        "GRADER_RUNNER_CHECK_INTERVAL": _int(env, "GRADER_RUNNER_CHECK_INTERVAL", 5),
        # Liveness: a grading worker refreshes its run's heartbeat this often; a run not refreshed for the
        # timeout is taken as lost (its worker died) and queued again by the sweep, which runs every interval.
        "GRADER_HEARTBEAT_INTERVAL": _int(env, "GRADER_HEARTBEAT_INTERVAL", 5),
        "GRADER_HEARTBEAT_TIMEOUT": _int(env, "GRADER_HEARTBEAT_TIMEOUT", 30),
        "GRADER_SWEEP_INTERVAL": _int(env, "GRADER_SWEEP_INTERVAL", 10),
        # Deliveries that started a run (retries and takeovers included) before it ends in error: a file that
        # kills its worker every time must not take the queue down with it.
        "GRADER_MAX_ATTEMPTS": _int(env, "GRADER_MAX_ATTEMPTS", 8),
        "SESSION_COOKIE_SECURE": env.get("SESSION_COOKIE_SECURE", "").lower() in ("1", "true", "yes"),
        # Lax keeps the session cookie off cross-site POSTs: a second line of defence beside CSRF tokens.
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_HTTPONLY": True,
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "RATELIMIT_HEADERS_ENABLED": True,
        # The limiter's store is often the broker's Redis: when it is down, count in this process's memory
        # (and, failing that, let the request through) rather than answer 500 to every upload.
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
        "RATELIMIT_SWALLOW_ERRORS": True,
        "GRADER_LOGIN_RATE_LIMIT": env.get("GRADER_LOGIN_RATE_LIMIT") or "10 per minute",
        "GRADER_SESSION_IDLE_SECONDS": _int(env, "GRADER_SESSION_IDLE_SECONDS", 8 * 3600),
        "GRADER_LOG_FORMAT": (env.get("GRADER_LOG_FORMAT") or "plain").lower(),
        "GRADER_LOG_LEVEL": (env.get("GRADER_LOG_LEVEL") or "INFO").upper(),
    }


def finalize(config: dict[str, Any]) -> None:
    """Fill derived defaults after overrides are applied, and check the settings are consistent."""
    home = Path(config["GRADER_HOME"]).resolve()
    config["GRADER_HOME"] = str(home)
    if not config.get("SQLALCHEMY_DATABASE_URI"):
        config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{home / 'grader.db'}"
    config["SQLALCHEMY_DATABASE_URI"] = normalize_database_url(config["SQLALCHEMY_DATABASE_URI"])
    config["SUBMISSIONS_DIR"] = str(Path(config.get("SUBMISSIONS_DIR") or home / "submissions").resolve())
    redis_broker = str(config["BROKER_URL"]).startswith(("redis://", "rediss://"))
    if not config.get("RESULT_BACKEND") and redis_broker:
        config["RESULT_BACKEND"] = config["BROKER_URL"]
    if not config.get("RATELIMIT_STORAGE_URI"):
        # Counters must be shared by every web process: Redis when there is one, else this process's memory.
        config["RATELIMIT_STORAGE_URI"] = config["BROKER_URL"] if redis_broker else "memory://"
    if str(config["RATELIMIT_STORAGE_URI"]).startswith(("redis://", "rediss://")):
        # A Redis that is down must cost an upload two seconds at most, not the client's default wait.
        config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_connect_timeout": 2, "socket_timeout": 2})
    max_upload = int(config["GRADER_MAX_UPLOAD_BYTES"])
    if max_upload <= 0:
        raise ConfigError("GRADER_MAX_UPLOAD_BYTES must be positive")
    # Whole-request cap: one file plus room for the multipart envelope; the per-file check is exact.
    config["MAX_CONTENT_LENGTH"] = max_upload + 64 * 1024
    soft, hard = int(config["GRADER_TASK_SOFT_TIME_LIMIT"]), int(config["GRADER_TASK_TIME_LIMIT"])
    visibility = int(config["GRADER_VISIBILITY_TIMEOUT"])
    # A task still running when the visibility timeout expires is delivered a second time: keep both limits
    # below it so a task is always dead before Redis hands it to another worker.
    if not 0 < soft < hard < visibility:
        raise ConfigError(
            "need 0 < GRADER_TASK_SOFT_TIME_LIMIT < GRADER_TASK_TIME_LIMIT < GRADER_VISIBILITY_TIMEOUT, "
            f"got {soft} < {hard} < {visibility}"
        )
    interval, timeout = int(config["GRADER_HEARTBEAT_INTERVAL"]), int(config["GRADER_HEARTBEAT_TIMEOUT"])
    if not 0 < interval < timeout:
        raise ConfigError(f"need 0 < GRADER_HEARTBEAT_INTERVAL < GRADER_HEARTBEAT_TIMEOUT, got {interval} < {timeout}")
    if int(config["GRADER_RUNNER_CHECK_INTERVAL"]) <= 0:
        raise ConfigError("GRADER_RUNNER_CHECK_INTERVAL must be positive")
    if config["GRADER_RUNNER"] not in ("auto", "docker", "local"):
        raise ConfigError(f"GRADER_RUNNER must be auto, docker or local, not {config['GRADER_RUNNER']!r}")
    idle = int(config["GRADER_SESSION_IDLE_SECONDS"])
    if idle <= 0:
        raise ConfigError("GRADER_SESSION_IDLE_SECONDS must be positive")
    # The browser drops the cookie after the idle time too (refreshed with each request, as the session is).
    config.setdefault("PERMANENT_SESSION_LIFETIME", idle)
    if config["GRADER_LOG_FORMAT"] not in ("plain", "json"):
        raise ConfigError(f"GRADER_LOG_FORMAT must be plain or json, not {config['GRADER_LOG_FORMAT']!r}")
    if config["GRADER_LOG_LEVEL"] not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"GRADER_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {config['GRADER_LOG_LEVEL']!r}")
    config["CELERY"] = celery_settings(config)


def celery_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The Celery configuration (lower-case keys) for `celery_init_app`."""
    broker_url = config["BROKER_URL"]
    transport_options: dict[str, Any] = {"visibility_timeout": int(config["GRADER_VISIBILITY_TIMEOUT"])}
    if broker_url.startswith("filesystem://"):
        folder = Path(config["GRADER_HOME"]) / "broker"
        # Producer and consumer share one folder: the web process writes where the worker reads.
        transport_options = {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"),
            "polling_interval": 0.5,
        }
    settings: dict[str, Any] = {
        "broker_url": broker_url,
        "broker_transport_options": transport_options,
        "broker_connection_retry_on_startup": True,
        # A worker that lost Redis tries again for as long as it takes. Celery's default, 100 tries (about 46
        # minutes), ends the worker with exit status 0 ("Unrecoverable error"), which a supervisor restarting on
        # failure leaves dead: uploads accepted during a long outage would never be graded.
        "broker_connection_max_retries": None,
        "result_backend": config.get("RESULT_BACKEND"),
        "result_expires": 24 * 3600,
        "task_ignore_result": config.get("RESULT_BACKEND") is None,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": "cpu",
        "task_acks_late": True,  # ack after grading, so a crashed worker's task is delivered again
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,  # a long grading task must not hold a second one hostage
        "task_soft_time_limit": int(config["GRADER_TASK_SOFT_TIME_LIMIT"]),
        "task_time_limit": int(config["GRADER_TASK_TIME_LIMIT"]),
        "task_publish_retry_policy": {"max_retries": 3, "interval_start": 0, "interval_step": 0.5},
        "beat_schedule": beat_schedule(config),
    }
    return settings


def beat_schedule(config: Mapping[str, Any]) -> dict[str, Any]:
    """Every periodic job, as run by `grader beat` (embedded in `grader serve`): intervals in seconds."""
    from grader import celery_app as tasks

    sweep = float(config["GRADER_SWEEP_INTERVAL"])
    return {
        "recover-runs": {"task": tasks.RECOVER_RUNS, "schedule": sweep},
        "lms-due": {"task": tasks.LMS_DUE, "schedule": sweep},
        "purge-receipts": {"task": tasks.PURGE_RECEIPTS, "schedule": 3600.0},
        "cleanup-host": {"task": tasks.CLEANUP_HOST, "schedule": 600.0},
    }


def resolve_runner(name: str | None, announce: bool = True) -> str:
    """The runner to use for GRADER_RUNNER (or `--runner`) `name`: `auto` (or none) is docker when a Docker
    engine answers, else local (said on stderr when `announce`); docker and local are themselves."""
    if name in (None, "", "auto"):
        from worker.engine.runners import default_runner_name

        return default_runner_name(announce=announce)
    return name


def ensure_secret_key(config: dict[str, Any]) -> None:
    """Use SECRET_KEY if set; else read (or create, mode 0600) `GRADER_HOME/secret_key` — never a constant."""
    if config.get("SECRET_KEY"):
        return
    path = Path(config["GRADER_HOME"]) / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: when web and worker start together, exactly one writes the key and both read the same one.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
    key = path.read_text().strip()
    if not key:
        raise ConfigError(f"{path} is empty: delete it or set SECRET_KEY")
    config["SECRET_KEY"] = key


def normalize_database_url(url: str) -> str:
    """Point plain `postgres://`/`postgresql://` URLs at psycopg 3, the driver this project ships."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
