"""`python -m grader` is the `grader` command (used to start worker children with this interpreter)."""

from grader.cli import main

main()
