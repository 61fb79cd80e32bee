"""`grader` subcommands, one module per concern; each has `register(group)`."""
