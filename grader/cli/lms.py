"""`grader lms …`: webhook integrations (add, list, rotate, remove, set-url, sweep) and LTI registrations.

`grader lms add NAME --course COURSE [--outbound-url URL]` prints exactly two lines other tools read:
`inbound-secret: whsec_…` and `outbound-secret: whsec_…`.
"""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup

from grader.lms import ags, integrations, lti_conf, outbound, receipts

lms_group = AppGroup("lms", help="LMS integrations: signed webhooks in and out, LTI 1.3.")


@lms_group.command("add")
@click.argument("name")
@click.option("--course", "course", required=True, help="Course code the LMS's submissions belong to.")
@click.option("--outbound-url", default=None, help="Where submission.graded/failed events are POSTed.")
def add_command(name: str, course: str, outbound_url: str | None) -> None:
    """Register an integration and print its inbound and outbound secrets (shown only now)."""
    _, secrets = integrations.add_integration(name, course, outbound_url)
    for line in secrets.lines():
        click.echo(line)


@lms_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(as_json: bool) -> None:
    """List integrations (never their secrets)."""
    rows = integrations.list_integrations()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        grace = f" (old secrets valid until {row['inbound_grace_until']})" if row["inbound_grace_until"] else ""
        click.echo(f"{row['name']}\tcourse={row['course']}\toutbound={row['outbound_url'] or '-'}{grace}")


@lms_group.command("rotate")
@click.argument("name")
@click.option("--which", type=click.Choice(["inbound", "outbound", "both"]), default="both", show_default=True)
@click.option(
    "--grace",
    type=float,
    default=None,
    help="Seconds the old secret stays valid (default GRADER_LMS_SECRET_GRACE, a day).",
)
def rotate_command(name: str, which: str, grace: float | None) -> None:
    """Replace a secret; the old one keeps working for the grace period. Prints the new secret(s)."""
    for line in integrations.rotate(name, which, grace).lines():
        click.echo(line)


@lms_group.command("set-url")
@click.argument("name")
@click.argument("url", required=False)
def set_url_command(name: str, url: str | None) -> None:
    """Change where events are sent (no URL: stop sending)."""
    integrations.set_outbound_url(name, url)
    click.echo(f"{name}: outbound URL {url or 'cleared'}")


@lms_group.command("remove")
@click.argument("name")
def remove_command(name: str) -> None:
    """Delete an integration with its delivery log."""
    integrations.remove(name)
    click.echo(f"removed {name}")


@lms_group.command("sweep")
def sweep_command() -> None:
    """Re-queue deliveries and score publications whose task was lost, purge old replay records (run it
    periodically, e.g. every few minutes from cron)."""
    click.echo(f"re-queued {outbound.sweep()} deliveries")
    click.echo(f"re-queued {ags.sweep()} LTI score publications")
    click.echo(f"purged {receipts.purge_receipts()} old webhook receipts")


@lms_group.group("lti")
def lti_group() -> None:
    """LTI 1.3 platform registrations."""


@lti_group.command("add")
@click.option("--issuer", required=True, help="The platform's issuer (iss).")
@click.option("--client-id", required=True, help="The client id the platform gave this tool.")
@click.option("--key-set-url", required=True, help="The platform's JWKS URL.")
@click.option("--auth-login-url", required=True, help="The platform's OIDC authorization endpoint.")
@click.option("--token-url", required=True, help="The platform's OAuth2 token endpoint.")
@click.option("--deployment-id", required=True, help="The deployment id launches carry.")
@click.option("--course", required=True, help="Course code launches from this deployment land in.")
@click.option("--audience", default=None, help="Token audience, when the platform wants other than the token URL.")
def lti_add_command(course: str, audience: str | None, **platform: str) -> None:
    """Register a platform (or add a deployment); prints the tool URLs and public key to give the platform."""
    # The platform options (issuer, client id, URLs, deployment id) are add_registration's own keywords.
    row = lti_conf.add_registration(**platform, course_code=course, auth_audience=audience)
    click.echo(f"registration: {row.id}")
    click.echo("login-url: /lti/login")
    click.echo("launch-url: /lti/launch")
    click.echo("jwks-url: /lti/jwks")
    click.echo(row.tool_public_key.strip())


@lti_group.command("list")
def lti_list_command() -> None:
    """List platform registrations and their deployments (JSON)."""
    click.echo(json.dumps(lti_conf.list_registrations(), indent=2))


@lti_group.command("remove")
@click.option("--issuer", required=True)
@click.option("--client-id", required=True)
def lti_remove_command(issuer: str, client_id: str) -> None:
    """Forget a platform registration."""
    lti_conf.remove_registration(issuer, client_id)
    click.echo(f"removed {issuer} {client_id}")


def register(group: click.Group) -> None:
    """Add `grader lms` to the `grader` command."""
    group.add_command(lms_group)
