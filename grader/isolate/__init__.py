"""Stage 3, run isolated: the trust boundary. Everything that executes student code lives here
(and in grader.observe, which only the forked children run). Nothing here decides points."""
