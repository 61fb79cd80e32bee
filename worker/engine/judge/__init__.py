"""The judge: runs the reference tests in a trusted process, calling into the sandbox for every student call."""
