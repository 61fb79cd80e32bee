"""The grading engine: manifests, runners, the judge and the result document."""
