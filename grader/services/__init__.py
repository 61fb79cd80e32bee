"""Domain logic shared by the API, the pages, the CLI and the workers (no HTTP here)."""
