"""Stage 4, observe: the probes that run next to student code, inside the isolated child.

They record raw facts — layer calls, shapes, parameter counts, output tensors, loss values, call
counts — and hand them to the grader as plain data. They never decide points: a verdict computed
in the same process as student code could be forged by it. Only the child imports this package.
"""
