"""Stage 7, report: writers that consume SubmissionResults (CSV, Markdown feedback, terminal).
Adding an output format adds one module here and touches nothing upstream."""
