"""Stage 3, run isolated: process mechanics. The worker process (`worker`), the host's handle on
it (`client`), the forked child with its limits (`sandbox`) inside bubblewrap (`bubblewrap`), and
the supervision of reading children (`reading`). What the children run lives in grader.child.
Nothing here decides points."""
