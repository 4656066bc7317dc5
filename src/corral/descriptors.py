"""How many files and sockets corral may hold open, and room for them from the start.

Every relayed stream holds two descriptors: the client's socket and the backend's. At start,
corral raises its soft limit on open files to the hard limit (as Go programs, Ollama among them,
do by themselves), so a default soft limit of 1024 does not cap it at about 500 streams.

It also grows its descriptor table once, at start, to hold :data:`RESERVED` descriptors (or the
limit, if lower). The kernel grows a process's table by doubling it when a new descriptor does
not fit, and in a process with several threads (corral's database threads) each doubling waits
for an RCU grace period: the event loop stood still for 10-12 ms at a time while 500 streams
opened (seen with ``perf`` on the benchmark's scenario (b)). Grown at start, the table costs
8 bytes of kernel memory per slot and never pauses a request.

Example::

    limit = raise_open_file_limit()    # e.g. 1048576
    reserve_descriptor_table(RESERVED)
"""

from __future__ import annotations

import fcntl
import os
import resource

RESERVED = 16_384
# Linux refuses a soft limit above fs.nr_open, whatever the hard limit says.
_NR_OPEN = "/proc/sys/fs/nr_open"


def raise_open_file_limit() -> int:
    """Raise the soft limit on open files to the hard limit, if allowed; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        try:
            with open(_NR_OPEN, encoding="ascii") as file:
                target = int(file.read())
        except (OSError, ValueError):
            return soft
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError):
            return soft
        return target
    return soft


def reserve_descriptor_table(count: int) -> None:
    """Grow this process's descriptor table to ``count`` slots (at most the open-file limit)
    now, by opening one descriptor at the top and closing it; the table keeps its size."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    top = min(count, soft) - 1
    if top <= 0:
        return
    probe = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        # The lowest free descriptor at or above ``top``: never one already in use.
        os.close(fcntl.fcntl(probe, fcntl.F_DUPFD_CLOEXEC, top))
    except OSError:
        pass  # a table left to grow costs a pause at each doubling, nothing more
    finally:
        os.close(probe)
