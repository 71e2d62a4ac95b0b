"""One process owns an output folder at a time, and a stage's process does not outlive the
command that started it (the `dvc` or the shell): no orphan keeps writing into a folder that
the next run resumes from."""

import fcntl
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aevae.errors import ConfigError
from aevae.ranks import is_rank_zero

LOCK_FILE = ".lock"
WATCH_INTERVAL_S = 1.0


@contextmanager
def own_folder(folder: Path) -> Iterator[None]:
    """Hold `<folder>/.lock` (an advisory lock the kernel drops when the process dies, however it
    dies); a second process refuses in one line naming the holder's pid. The ranks of one
    multi-process training share the folder: rank 0 holds it for them."""
    if not is_rank_zero():
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK_FILE, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise ConfigError(f"{folder}: another training (pid {holder}) is writing here; wait for it to end or stop it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


def ancestors(pid: int) -> list[int]:
    """The parent chain of `pid` up to (not including) init, read from /proc."""
    chain = []
    while pid > 1:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            break
        pid = int(fields[1])
        if pid > 1:
            chain.append(pid)
    return chain


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def watched_ancestors() -> list[int]:
    """The processes whose death ends this one: the parent, and under DVC (`DVC_STAGE` set) every
    ancestor up to the `dvc` process (which runs the stage through a shell)."""
    chain = ancestors(os.getpid())
    if not os.environ.get("DVC_STAGE"):
        return chain[:1]
    for i, pid in enumerate(chain):
        if any(Path(token).name == "dvc" for token in command_of(pid).split()[:2]):
            return chain[: i + 1]
    return chain[:1]


def end_with_parent() -> None:
    """Send this process SIGTERM (Lightning stops the fit and the run ends as failed) once a
    watched ancestor is gone: checked every second by a daemon thread (Linux; elsewhere a no-op)."""
    if not Path("/proc/self/stat").exists():
        return
    watched = watched_ancestors()
    if not watched:
        return

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        try:  # a zombie has exited: its parent has not collected it yet
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    def watch() -> None:
        while all(alive(pid) for pid in watched) and os.getppid() == watched[0]:
            threading.Event().wait(WATCH_INTERVAL_S)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()
