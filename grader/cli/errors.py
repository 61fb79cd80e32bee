"""How the `grader` command reports a mistake the user can fix: one line on stderr, exit status 2."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click
from sqlalchemy.exc import DBAPIError

from grader.config import ConfigError
from grader.errors import ServiceError
from worker.engine.errors import AssignmentError, UsageError

# Exceptions that mean "you asked for something impossible", not "the program is broken".
USER_ERRORS = (ConfigError, ServiceError, AssignmentError, UsageError)


class CLIError(click.ClickException):
    """A one-line error; exit status 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        """Print `grader: error: MESSAGE` on stderr."""
        click.echo(f"grader: error: {self.format_message()}", err=True)


def one_line(text: str) -> str:
    """Fold any whitespace (newlines included) into single spaces: an error is one line, whatever it held."""
    return " ".join(text.split())


def usage_error(message: str) -> NoReturn:
    """One line on stderr, exit 2: the contract for every bad input to the CLI (for commands outside a group)."""
    click.echo(f"grader: error: {one_line(message)}", err=True)
    sys.exit(2)


def user_message(exc: BaseException) -> str:
    """The one line a user error prints: its detail (service errors) or its text."""
    detail = getattr(exc, "detail", None)
    return one_line(str(detail if detail is not None else exc)) or type(exc).__name__


def database_message(exc: DBAPIError) -> str:
    """A database failure as advice: an empty database wants `grader db upgrade`."""
    first = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
    if "no such table" in first or "does not exist" in first:
        return f"the database has no tables yet ({first}): run `grader db upgrade` or `grader serve` first"
    return f"database error: {first}"
