"""The `grader` command: Flask's commands (`grader db upgrade`, …) plus every command group of ours.

Each module of this package is one command group with a `register(group)` function; `register_commands` below
adds them all, to the `grader` console script and to the app's `flask --app grader` commands alike.
Errors a user can fix are printed as one line on stderr and exit with status 2 (grader/cli/errors.py).
"""

from __future__ import annotations

import sys
from typing import Any

import click
from flask.cli import FlaskGroup
from sqlalchemy.exc import DBAPIError

from grader.cli.errors import USER_ERRORS, CLIError, database_message, one_line, user_message

__all__ = ["CLIError", "cli", "main", "register_commands"]


class GraderGroup(FlaskGroup):
    """FlaskGroup that turns user errors (also those raised while building the app) into CLIError."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command, translating user errors."""
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            raise CLIError(user_message(exc)) from exc
        except DBAPIError as exc:
            raise CLIError(database_message(exc)) from exc


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
    # Imported here, not at the top: grader.app imports this package, and the command modules import the app's
    # services; importing them lazily keeps `import grader.cli` cheap and free of cycles.
    from grader.cli import admin, demo, engine, lms, policy, queue, serve

    serve.register(group)
    demo.register(group)
    admin.register(group)
    queue.register(group)
    policy.register(group)
    lms.register(group)
    engine.register(group)  # `grader grade`, `grader image build`: the engine, no app or database


register_commands(cli)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `grader` console script: usage errors are one line on stderr and exit 2."""
    try:
        cli.main(args=argv, prog_name="grader", standalone_mode=False)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx and exc.ctx.parent else ""
        click.echo(f"grader: error: {one_line(exc.format_message())}{hint}", err=True)
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
