"""Memory of a process tree, read from /proc: RSS and PSS summed over a process and its
descendants, and a sampler that keeps the peaks while a command runs. Linux only; used by the
benchmark scripts."""

from __future__ import annotations

import os
import threading


def _processes() -> tuple[dict[int, list[int]], dict[int, int]]:
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)
        rss[pid] = int(fields[21]) * page
    return children, rss


def _pss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _environ(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            items = f.read().split(b"\0")
    except OSError:
        return {}
    return dict(item.decode(errors="replace").partition("=")[::2] for item in items if b"=" in item)


def tree_memory(root: int, *, include_root: bool = True, with_pss: bool = True) -> tuple[int, int, int, set[int]]:
    """(RSS, PSS, process count, pids) over `root`'s descendants (and `root` itself unless told not).
    RSS counts a page shared by forked processes once per process; PSS splits it between them
    (reading it costs a file per process: `with_pss=False` reports RSS in its place)."""
    children, rss = _processes()
    stack = [root] if include_root else list(children.get(root, []))
    total_rss = total_pss = 0
    seen: set[int] = set()
    while stack:
        pid = stack.pop()
        if pid not in rss:
            continue
        seen.add(pid)
        total_rss += rss[pid]
        pss = _pss_bytes(pid) if with_pss else None
        total_pss += rss[pid] if pss is None else pss
        stack += children.get(pid, [])
    return total_rss, total_pss, len(seen), seen


class MemorySampler:
    """Samples the memory of a process tree in a background thread; keeps the peaks."""

    def __init__(self, root: int, *, include_root: bool = True, interval_s: float = 0.1) -> None:
        self.root, self.include_root, self.interval_s = root, include_root, interval_s
        self.peak_rss = self.peak_pss = self.peak_processes = 0
        self.torch_threads: set[str] = set()  # GRADER_TORCH_THREADS of the worker processes seen
        self._seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            rss, pss, count, pids = tree_memory(self.root, include_root=self.include_root)
            for pid in pids - self._seen:
                self._seen.add(pid)
                threads = _environ(pid).get("GRADER_TORCH_THREADS")
                if threads:
                    self.torch_threads.add(threads)
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self.peak_processes = max(self.peak_processes, count)
            self._stop.wait(self.interval_s)
