"""Executors: feed submissions to warm workers and collect their results, on this machine
(`pool`) or on a Dask cluster (`cluster`). They run no student code themselves: the workers'
children do (grader/isolate/)."""
