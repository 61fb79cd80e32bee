"""Tests of the grading engine (worker/engine/): the judge, its runners, the wire, the CLI and the example corpus."""
