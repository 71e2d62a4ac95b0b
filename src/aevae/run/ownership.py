"""One process owns an output folder at a time, and a stage's process does not outlive the
command that started it (the `dvc` or the shell): no orphan keeps writing into a folder that
the next run resumes from."""

import ctypes
import fcntl
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aevae.errors import ConfigError

LOCK_FILE = ".lock"
WATCH_INTERVAL_S = 1.0
REPEAT_INTERVAL_S = 3.0  # between the SIGTERMs sent once the parent is gone
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
DVC_PID_VARIABLE = "AEVAE_DVC_PID"  # the `dvc` that started a stage, for the stage's own children


@contextmanager
def own_folder(folder: Path) -> Iterator[None]:
    """Hold `<folder>/.lock` (an advisory lock the kernel drops when the process dies, however it
    dies); a second process refuses in one line naming the holder's pid. The ranks of one
    multi-process training share the folder: rank 0 holds it for them."""
    from aevae.run.ranks import is_rank_zero  # not at import: the entry points import this module first, before anything slow

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


def is_dvc(pid: int) -> bool:
    """Whether `pid` runs DVC (`dvc ...`, `python .../dvc ...` or `python -m dvc ...`)."""
    return any(Path(token).name == "dvc" for token in command_of(pid).split()[:3])


def watched_ancestors() -> list[int] | None:
    """The processes whose death ends this one: the parent, and under DVC every ancestor up to
    the `dvc` process (which runs the stage through a shell). None when DVC started this process
    and is gone already (the process was re-parented before it could look).

    The process that DVC started (`DVC_STAGE` set) finds its `dvc` and names it to its own
    children (`AEVAE_DVC_PID`: the ranks Lightning starts, a sweep's local jobs), which watch up
    to it where it is their ancestor and their parent elsewhere (a job on another machine)."""
    chain = ancestors(os.getpid())
    named = os.environ.get(DVC_PID_VARIABLE)
    if named:
        return chain[: chain.index(int(named)) + 1] if int(named) in chain else chain[:1]
    if not os.environ.get("DVC_STAGE"):
        return chain[:1]
    for i, pid in enumerate([*chain, 1]):
        if is_dvc(pid):
            os.environ[DVC_PID_VARIABLE] = str(pid)
            return chain[: i + 1]
    return None


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


def parent_death_signal() -> None:
    """Ask Linux for SIGTERM the moment the parent exits (`prctl(PR_SET_PDEATHSIG)`); elsewhere nothing."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def end_with_parent() -> None:
    """Tie this process to the one that started it (Linux; elsewhere a no-op); called first thing,
    before anything slow, so that a `dvc` killed while the stage starts up still ends it.

    SIGTERM (Lightning stops the fit and the run ends as failed; outside a fit it ends the
    process) comes from the kernel when the parent exits, at once when DVC started this process
    and is gone already, and otherwise from a daemon thread that checks every second that the
    watched ancestors live and this process has not been re-parented; it repeats the signal
    every few seconds until the process is gone (a SIGTERM in a fit's last batch ends only the fit)."""
    if not Path("/proc/self/stat").exists():
        return
    parent = os.getppid()
    parent_death_signal()
    watched = watched_ancestors()
    if watched is None or (watched and os.getppid() != parent):
        os.kill(os.getpid(), signal.SIGTERM)
        return
    if not watched:
        return

    def watch() -> None:
        while all(alive(pid) for pid in watched) and os.getppid() == watched[0]:
            threading.Event().wait(WATCH_INTERVAL_S)
        while True:
            os.kill(os.getpid(), signal.SIGTERM)
            threading.Event().wait(REPEAT_INTERVAL_S)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()
