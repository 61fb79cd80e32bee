"""grader: a containerized autograding service for programming courses.

`create_app()` builds the Flask app (gunicorn: `gunicorn "grader:create_app()"`); `grader` is the CLI.
"""

from grader.app import create_app

__all__ = ["create_app"]
