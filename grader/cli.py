"""The `grader` command: Flask's commands (`grader db upgrade`, …) plus ours, registered from their modules.

Errors a user can fix are printed as one line on stderr and exit with status 2.
"""

from __future__ import annotations

import sys
from typing import Any

import click
from flask.cli import FlaskGroup
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


def _message(exc: BaseException) -> str:
    detail = getattr(exc, "detail", None)
    text = str(detail if detail is not None else exc) or type(exc).__name__
    return " ".join(text.split())  # one line, whatever the exception held


def _database_message(exc: DBAPIError) -> str:
    first = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
    if "no such table" in first or "does not exist" in first:
        return f"the database has no tables yet ({first}): run `grader db upgrade` or `grader serve` first"
    return f"database error: {first}"


class GraderGroup(FlaskGroup):
    """FlaskGroup that turns user errors (also those raised while building the app) into CLIError."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command, translating user errors."""
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            raise CLIError(_message(exc)) from exc
        except DBAPIError as exc:
            raise CLIError(_database_message(exc)) from exc


def _create_app() -> Any:
    from grader.app import create_app

    return create_app()


cli = GraderGroup(
    name="grader",
    create_app=_create_app,
    add_default_commands=True,
    help="Containerized autograding service. Run `grader serve` to start it on embedded defaults.",
)


def register_commands(group: click.Group) -> None:
    """Add our commands to `group`: the `grader` command, and the app's `flask --app grader` commands."""
    from grader.commands import admin, demo, serve
    from grader.lms import cli as lms_cli

    serve.register(group)
    demo.register(group)
    admin.register(group)
    lms_cli.register(group)
    try:
        # Engine commands (`grader grade`, `grader image build`) live with the engine.
        from grader.cli_engine import register as register_engine
    except ImportError:
        return
    register_engine(group)


register_commands(cli)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `grader` console script: usage errors are one line on stderr and exit 2."""
    try:
        cli.main(args=argv, prog_name="grader", standalone_mode=False)
    except click.UsageError as exc:
        hint = f" (see 'grader {exc.ctx.info_name} --help')" if exc.ctx and exc.ctx.parent else ""
        click.echo(f"grader: error: {' '.join(exc.format_message().split())}{hint}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("grader: aborted", err=True)
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main(sys.argv[1:])
