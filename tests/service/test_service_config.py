"""Configuration: embedded defaults with nothing set, production settings from the environment, and checks."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from grader.config import ConfigError, celery_settings, ensure_secret_key, finalize, load_config
from grader.services.storage import StorageError, SubmissionStore


def settings(env: dict[str, str]) -> dict[str, object]:
    """What the app would be configured with under `env` alone."""
    config = load_config(env)
    finalize(config)
    return config


def test_embedded_defaults_live_under_grader_home(tmp_path: Path) -> None:
    """With only GRADER_HOME set, are the database, broker, submissions and rate limits all local?"""
    config = settings({"GRADER_HOME": str(tmp_path)})
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path}/grader.db"
    assert config["BROKER_URL"] == "filesystem://"
    assert config["SUBMISSIONS_DIR"] == str(tmp_path / "submissions")
    assert config["RATELIMIT_STORAGE_URI"] == "memory://" and config["RESULT_BACKEND"] is None
    assert config["GRADER_MAX_UPLOAD_BYTES"] == 1_048_576
    assert config["CELERY"]["broker_transport_options"]["data_folder_in"] == str(tmp_path / "broker" / "queue")


def test_production_settings_come_from_the_environment(tmp_path: Path) -> None:
    """Do DATABASE_URL and BROKER_URL switch to PostgreSQL (psycopg 3) and Redis, with Redis-backed limits?"""
    config = settings({"GRADER_HOME": str(tmp_path), "DATABASE_URL": "postgres://u:p@db/grader",
                       "BROKER_URL": "redis://redis:6379/0", "GRADER_MAX_UPLOAD_BYTES": "2048"})
    assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u:p@db/grader"
    assert config["RESULT_BACKEND"] == config["RATELIMIT_STORAGE_URI"] == "redis://redis:6379/0"
    assert config["MAX_CONTENT_LENGTH"] > 2048
    celery = celery_settings(config)
    assert celery["task_acks_late"] and celery["task_reject_on_worker_lost"]
    assert celery["worker_prefetch_multiplier"] == 1
    assert celery["task_soft_time_limit"] < celery["task_time_limit"] < (
        celery["broker_transport_options"]["visibility_timeout"])


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GRADER_TASK_TIME_LIMIT": "4000"}, "GRADER_VISIBILITY_TIMEOUT"),
        ({"GRADER_TASK_SOFT_TIME_LIMIT": "950"}, "GRADER_TASK_SOFT_TIME_LIMIT"),
        ({"GRADER_MAX_UPLOAD_BYTES": "0"}, "must be positive"),
        ({"GRADER_MAX_UPLOAD_BYTES": "1MB"}, "whole number"),
        ({"GRADER_RUNNER": "podman"}, "GRADER_RUNNER"),
        ({"GRADER_RUNNER_CHECK_INTERVAL": "0"}, "GRADER_RUNNER_CHECK_INTERVAL must be positive"),
        ({"GRADER_RUNNER_CHECK_INTERVAL": "often"}, "whole number"),
    ],
)
def test_inconsistent_settings_are_refused(tmp_path: Path, env: dict[str, str], message: str) -> None:
    """Is a time limit at or above the visibility timeout, or a nonsense value, refused with a clear reason?"""
    with pytest.raises(ConfigError, match=message):
        settings({"GRADER_HOME": str(tmp_path), **env})


def test_secret_key_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    """Without SECRET_KEY, is a random key written to GRADER_HOME (mode 0600) and reused on the next start?"""
    first: dict[str, object] = {"GRADER_HOME": str(tmp_path), "SECRET_KEY": None}
    ensure_secret_key(first)
    second: dict[str, object] = {"GRADER_HOME": str(tmp_path), "SECRET_KEY": None}
    ensure_secret_key(second)
    assert first["SECRET_KEY"] == second["SECRET_KEY"] and len(str(first["SECRET_KEY"])) == 64
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    other: dict[str, object] = {"GRADER_HOME": str(tmp_path / "elsewhere"), "SECRET_KEY": None}
    ensure_secret_key(other)
    assert other["SECRET_KEY"] != first["SECRET_KEY"]
    configured = "from-the-environment"
    given: dict[str, object] = {"GRADER_HOME": str(tmp_path), "SECRET_KEY": configured}
    ensure_secret_key(given)
    assert given["SECRET_KEY"] == configured


def test_store_names_files_by_hash_only(tmp_path: Path) -> None:
    """Does the store file bytes under their sha256 (deduplicated), refuse non-hash names, and detect tampering?"""
    store = SubmissionStore(tmp_path)
    digest = store.put(b"print(1)\n")
    assert digest == hashlib.sha256(b"print(1)\n").hexdigest()
    assert store.put(b"print(1)\n") == digest and store.get(digest) == b"print(1)\n"
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [digest]
    for bad in ("../../etc/passwd", "solution.py", digest.upper()):
        with pytest.raises(ValueError):
            store.path_for(bad)
    store.path_for(digest).write_bytes(b"tampered")
    with pytest.raises(StorageError, match="corrupt"):
        store.get(digest)
    store.delete(digest)
    with pytest.raises(StorageError, match="missing"):
        store.get(digest)


@pytest.mark.parametrize(("value", "message"), [("-1", "must be between 0 and"), ("nan", "must be between 0 and"),
                                                ("1e20", "must be between 0 and"),
                                                ("two days", "must be a number of seconds")])
def test_an_lms_backdate_limit_defaults_to_two_days_and_a_bad_one_is_refused(value: str, message: str) -> None:
    """Is GRADER_LMS_BACKDATE_LIMIT two days when unset, and a negative, endless or non-numeric one refused by
    name (rather than answering 500 to every LMS message that carries a `submitted_at`)?"""
    from flask import Flask

    from grader.lms.settings import configure

    unset = Flask(__name__)
    configure(unset, {})
    assert unset.config["GRADER_LMS_BACKDATE_LIMIT"] == 2 * 24 * 3600
    with pytest.raises(ConfigError, match=f"GRADER_LMS_BACKDATE_LIMIT {message}"):
        configure(Flask(__name__), {"GRADER_LMS_BACKDATE_LIMIT": value})
