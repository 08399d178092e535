"""The file backend's lock: one writer per state file, across processes.

``<state>.lock`` holds who took it (id, pid, host, user, command, time, and the
process start time that tells a live pid from a reused one). The kernel's
``flock`` on that file is what actually excludes: it dies with its process, so a
lock left by a killed run on this host is recognised as dead and taken over.
A lock from another host cannot be judged from here: it needs ``force-unlock``.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from provisioner.backends.base import LockError, LockInfo
from provisioner.backends.lockwait import LockWait


def lock_path(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + ".lock")


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (Linux); [] where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    # The command name (field 2) may contain spaces and parentheses: split after it.
    return stat[stat.rfind(")") + 2 :].split()


def process_start_time(pid: int) -> str | None:
    """Start time of a process in clock ticks since boot (Linux), None where unknown."""
    fields = _stat_fields(pid)
    return fields[19] if len(fields) > 19 else None


def holder_is_dead(info: LockInfo) -> bool:
    if info.host != socket.gethostname():
        return False
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    if _stat_fields(info.pid)[:1] == ["Z"]:
        return True  # exited, only waiting for its parent to collect its status
    started = process_start_time(info.pid)
    return info.process_start is not None and started is not None and started != info.process_start


def _read_info(fd: int) -> LockInfo | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = b""
    while chunk := os.read(fd, 65536):
        raw += chunk
    if not raw.strip():
        return None
    try:
        return LockInfo(**json.loads(raw))
    except (ValueError, TypeError):
        return None


def read_lock_info(state_path: Path) -> LockInfo | None:
    """Who holds the lock of ``state_path`` now, as its lock file says; None: nobody."""
    try:
        fd = os.open(lock_path(state_path), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return _read_info(fd)
    finally:
        os.close(fd)


class StateLock:
    def __init__(self, state_path: str | Path, command: str, timeout: float = 0.0, warn=None):
        self.state_path = Path(state_path)
        self.path = lock_path(self.state_path)
        self.command = command
        self.timeout = timeout
        self.warn = warn or (lambda message: print(message, file=sys.stderr))
        self.info: LockInfo | None = None
        self._fd: int | None = None

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        waiting = LockWait(str(self.state_path), self.timeout, self.warn)
        while True:
            holder = self._try_acquire()
            if holder is None:
                waiting.acquired()
                return
            if time.monotonic() >= deadline:
                raise LockError(
                    f"the state {self.state_path} is locked by another run:\n  {holder.describe()}\n"
                    + _what_to_do(holder)
                )
            waiting.blocked(holder)
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def _try_acquire(self) -> LockInfo | None:
        """None when the lock is ours now; else the holder's description."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_info(fd)
            os.close(fd)
            return holder or LockInfo("unknown", 0, "?", "?", "?", "?", None)
        # The file may have been released and unlinked between our open and flock.
        try:
            same_file = os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            same_file = False
        if not same_file:
            os.close(fd)
            return self._try_acquire()
        previous = _read_info(fd)
        if previous is not None:
            if not holder_is_dead(previous):
                os.close(fd)
                return previous
            self.warn(
                f"Warning: taking over the lock of a run that is no longer alive "
                f"(pid {previous.pid} on {previous.host}, {previous.command}, since {previous.created})."
            )
        self._write_info(fd)
        self._fd = fd
        return None

    def _write_info(self, fd: int) -> None:
        pid = os.getpid()
        self.info = LockInfo(
            id=str(uuid.uuid4()),
            pid=pid,
            host=socket.gethostname(),
            user=current_user(),
            command=self.command,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            process_start=process_start_time(pid),
        )
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(asdict(self.info), indent=2).encode())
        os.fsync(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        # Unlink while still holding the flock, so nobody can see an empty, unlocked file;
        # and only our own file: after a force-unlock the path may be the next run's lock.
        try:
            if os.path.samestat(os.stat(self.path), os.fstat(self._fd)):
                self.path.unlink()
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None


def _what_to_do(holder: LockInfo) -> str:
    if holder.host == socket.gethostname():
        return (
            f"That run is still going (pid {holder.pid} on this machine): wait for it to finish, or pass "
            "--lock-timeout SECONDS to wait for it."
        )
    return (
        "Wait for it to finish, or pass --lock-timeout SECONDS to wait. Only if you are sure that run is "
        f"gone (its machine stopped), release the lock with: provisioner force-unlock {holder.id}"
    )


def force_unlock(
    state_path: str | Path, lock_id: str, before_removal: Callable[[LockInfo], None] | None = None
) -> LockInfo:
    """Removes a lock left by a run that is gone; refuses while its holder still runs here.
    ``before_removal``: run while the lock is held here, once the lock is known to be the one to remove."""
    state_path = Path(state_path)
    path = lock_path(state_path)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        raise LockError(f"the state {state_path} is not locked; nothing to unlock.") from None
    try:
        try:
            # Holding the flock while checking and unlinking: a run starting meanwhile cannot
            # take the lock and then have its fresh file removed under it.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = _read_info(fd)
            holder = f"pid {info.pid} on {info.host}, {info.command}" if info else "a running process"
            # Two applies at once is exactly what the lock exists to prevent: credits issued twice.
            raise LockError(
                f"the run holding the lock is still alive ({holder}); nothing was changed. Stop it "
                "(Ctrl-C) or wait for it: force-unlock is for locks left by runs that are gone."
            ) from None
        info = _read_info(fd)
        if info is None or not os.path.samestat(os.fstat(fd), os.stat(path)):
            raise LockError(f"the state {state_path} is not locked; nothing to unlock.")
        if info.id != lock_id:
            raise LockError(
                f"the lock on {state_path} has ID {info.id}, not {lock_id}; nothing was changed.\n  {info.describe()}"
            )
        if before_removal is not None:
            before_removal(info)
        path.unlink()
        return info
    except FileNotFoundError:
        raise LockError(f"the state {state_path} is not locked; nothing to unlock.") from None
    finally:
        os.close(fd)


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
