"""LMS integration: signed webhooks in (`inbound`, its replay records in `receipts`) and out (`outbound`), LTI
1.3 launch (`lti`, what a launch records in `launches`) and grade passback (`ags`), the instructor's delivery log
(`views`); the `grader lms` commands are in grader/cli/lms.py.

`init_app(app)` is the one call the app factory makes: settings, blueprints, and the subscriptions to the
service's outcome signal (`grader.signals.outcome_recording`).
"""

from __future__ import annotations

from flask import Flask

import grader.models.lms  # noqa: F401  (register the LMS tables with the metadata)


def init_app(app: Flask) -> None:
    """Wire the LMS features into `app`."""
    from grader.lms import ags, inbound, lti, outbound, settings, views
    from grader.signals import outcome_recording

    settings.configure(app)
    app.register_blueprint(inbound.bp)
    app.register_blueprint(lti.bp)
    app.register_blueprint(views.bp)
    # Connecting the same module-level function twice is a no-op in blinker: safe for many apps per process.
    # The deliveries and publications are written in the transaction that records the outcome (an outbox).
    outcome_recording.connect(outbound.on_outcome)
    outcome_recording.connect(ags.on_outcome)
