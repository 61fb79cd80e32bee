"""Code that runs inside the sandbox, beside student code. Nothing here decides a verdict."""
