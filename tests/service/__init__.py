"""Tests of the grader service (grader/ and worker/tasks.py): API, pages, CLI, scores, LMS, policy, recovery, e2e."""
