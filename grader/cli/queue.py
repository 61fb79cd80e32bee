"""`grader queue`: the grading queue's state for an administrator's terminal or a monitoring check — what the
instructor's queue panel shows, and an exit status that says whether waiting submissions are stranded."""

from __future__ import annotations

import json
import sys

import click
from flask.cli import with_appcontext

from grader.templating import duration

# The exit status when waiting runs are not being graded (0 otherwise; 2 is a usage error). sys.exit, not
# click's Context.exit: `grader` runs click without standalone mode, which turns the latter into a return value.
STRANDED = 1


@click.command("queue")
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON (the live endpoint's form).")
@with_appcontext
def queue_command(as_json: bool) -> None:
    """Show workers (and why any takes no gradings), waiting and running runs, and whether the recovery sweeps
    run; exit 1 when waiting submissions are stranded (no online worker takes their queue, or the sweeps are
    late)."""
    from grader.services.queue import queue_state

    state = queue_state()
    if as_json:
        click.echo(json.dumps({**state.to_dict(), "stranded": state.stalled}, indent=2))
        sys.exit(STRANDED if state.stalled else 0)
    workers = "unknown (the broker did not answer)" if state.workers is None else \
        f"{state.workers} online, {state.taking} taking gradings"
    click.echo(f"workers\t{workers}")
    for name, why in state.paused:
        click.echo(f"paused\t{name}\t{why}")
    by_queue = ", ".join(f"{queue} {count}" for queue, count in sorted(state.by_queue.items()))
    click.echo(f"waiting\t{state.queued}" + (f" ({by_queue})" if by_queue else ""))
    click.echo(f"running\t{state.running}")
    click.echo(f"longest wait\t{duration(state.oldest_wait)}")
    click.echo(f"typical wait\t{duration(state.median_wait)} (last hour)")
    if state.unattended:
        click.echo("stranded\tno worker is online: start one with `grader worker`")
    for queue in state.untaken:
        click.echo(f"stranded\t{state.by_queue.get(queue, 0)} waiting in the {queue} queue, which no online worker "
                   f"takes now")
    if state.sweeps:
        click.echo(f"stranded\t{state.sweeps}")
    sys.exit(STRANDED if state.stalled else 0)


def register(group: click.Group) -> None:
    """Add `grader queue` to `group`."""
    group.add_command(queue_command)
