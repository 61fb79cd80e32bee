"""`python -m worker.engine.judge`: read a job on stdin, run the reference tests, write the verdicts file."""

from worker.engine.judge.main import main

main()
