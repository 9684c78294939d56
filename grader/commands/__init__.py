"""One module per command a user types: `grader run`, `grader selfcheck`, `grader fixtures`."""
