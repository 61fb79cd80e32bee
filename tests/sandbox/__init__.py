"""Tests of the sandbox (worker/sandbox/): isolation, parity across runners, and the hostile-submission corpus."""
