"""The disk spool: batches that could not be uploaded wait here, across restarts.

Each file is exactly one ready-to-send batch, a gzip member of JSON lines
(readable with ``zcat | jq``); the gzip CRC catches torn writes.  A file is
written as ``.tmp``, flushed, fsync'd and renamed, so a reader never sees half
a batch.  Several processes may share a spool directory: a batch is *claimed*
by renaming it to ``<name>.<pid>.inflight`` (atomic, so exactly one claimant
wins), deleted once the server has it, and renamed back if the upload fails.
A claim left behind by a dead process is released after a grace period.

Names are ``<created_ms>-<pid>-<writer>-<rand>-<records>.jsonl.gz`` so the oldest batch
sorts first and the record count is known without opening the file.
"""

from __future__ import annotations

import gzip
import os
import random
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from logos_shift import _guard

_SUFFIX = ".jsonl.gz"
_STALE_CLAIM_S = 60.0

# Claims this process holds right now, across every Spool object.  A claim
# file carrying this process's pid but missing here was left by an earlier
# process that had the same pid (a container's app is often pid 1 on every
# start), so recover() releases it instead of waiting for it forever.
_OWN_CLAIMS: set[str] = set()
_OWN_CLAIMS_LOCK = threading.Lock()


def _pid_alive(pid: int) -> bool:
    if pid <= 0:  # os.kill(0 or -1, ...) would ask about whole process groups
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Claim:
    """A batch file this process has claimed for upload."""

    path: Path
    original: Path
    lines: list[bytes]

    def done(self) -> None:
        """The server has the batch: delete the file."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        _forget(self.path)

    def release(self) -> None:
        """The upload failed: put the batch back for a later attempt."""
        try:
            os.rename(self.path, self.original)
        except FileNotFoundError:
            pass
        _forget(self.path)


@dataclass
class SpoolStats:
    """Counters of one spool (records unless the name says files)."""

    written_files: int = 0
    write_errors: int = 0
    evicted_records: int = 0
    corrupt_files: int = 0
    too_big: int = 0


class Spool:
    """A directory of pending batches with caps on bytes, files and age."""

    def __init__(self, directory: Path, max_bytes: int, max_files: int, max_age: float) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.max_age = max_age
        self.stats = SpoolStats()
        self._unavailable_until = 0.0
        self._prepared = False
        self.reset_after_fork()

    def reset_after_fork(self) -> None:
        """A new writer identity: a forked child must not claim the parent's evictions."""
        # Names carry the writer's pid and a random token, so evictions of
        # this writer's own batches (to be counted as drops by the channel)
        # are told apart from other processes' and earlier runs'.
        self._lock = threading.Lock()
        self._token = f"{random.getrandbits(32):08x}"
        self._own_prefix = f"-{os.getpid()}-{self._token}-"
        self._own_evicted: Counter[str] = Counter()

    def take_own_evictions(self) -> Counter[str]:
        """Records of this writer's batches evicted since the last call, by reason."""
        with self._lock:
            out, self._own_evicted = self._own_evicted, Counter()
        return out

    # -- writing -------------------------------------------------------------

    def available(self) -> bool:
        """False while the directory is unwritable (rechecked every 30 s)."""
        return time.monotonic() >= self._unavailable_until

    def write(self, lines: list[bytes]) -> bool:
        """Persist one batch durably; False if the disk refused it."""
        if not lines or not self.available():
            return False
        payload = gzip.compress(b"\n".join(lines) + b"\n", compresslevel=1)
        if len(payload) > self.max_bytes:
            # Could never fit: keep it in memory rather than empty the spool.
            self.stats.too_big += 1
            return False
        tmp: Path | None = None
        try:
            _guard.fault("spool")
            self._prepare()
            with self._lock:  # the closing thread may spill alongside the worker
                self._enforce_caps(extra_files=1, extra_bytes=len(payload))
            stamp = f"{time.time_ns() // 1_000_000:013d}{self._own_prefix}"
            name = f"{stamp}{random.getrandbits(32):08x}-{len(lines)}{_SUFFIX}"
            final = self.dir / name
            tmp = self.dir / (name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(payload)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, final)
            self._fsync_dir()
        except Exception:  # noqa: BLE001 - a full or read-only disk degrades to memory
            self.stats.write_errors += 1
            self._unavailable_until = time.monotonic() + 30.0
            _guard.report("spool.write")
            if tmp is not None:
                try:
                    tmp.unlink()
                except OSError:
                    pass
            return False
        self.stats.written_files += 1
        return True

    def _prepare(self) -> None:
        if not self._prepared:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._prepared = True

    def _fsync_dir(self) -> None:
        try:
            fd = os.open(self.dir, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    # -- reading -------------------------------------------------------------

    def _ready(self) -> list[Path]:
        try:
            names = sorted(e.name for e in os.scandir(self.dir) if e.name.endswith(_SUFFIX))
        except OSError:  # missing, not a directory, not readable: nothing to replay
            return []
        return [self.dir / n for n in names]

    def pending(self) -> tuple[int, int]:
        """``(files, bytes)`` currently waiting (not claimed)."""
        files = self._ready()
        size = 0
        for p in files:
            try:
                size += p.stat().st_size
            except FileNotFoundError:
                pass
        return len(files), size

    def claim_oldest(self) -> Claim | None:
        """Claim the oldest waiting batch, or None if there is none."""
        for path in self._ready():
            claimed = path.with_name(f"{path.name}.{os.getpid()}.inflight")
            with _OWN_CLAIMS_LOCK:
                _OWN_CLAIMS.add(str(claimed))
            try:
                os.rename(path, claimed)
            except FileNotFoundError:
                _forget(claimed)
                continue  # another process won this one
            except OSError:
                _forget(claimed)
                return None  # a read-only spool: its batches cannot be claimed
            try:
                data = gzip.decompress(claimed.read_bytes())
            except (OSError, EOFError, zlib.error):
                # A torn or corrupt file (should not happen given fsync +
                # rename): quarantine it rather than loop on it forever.
                self.stats.corrupt_files += 1
                try:
                    os.rename(claimed, claimed.with_name(claimed.name + ".corrupt"))
                except OSError:
                    pass
                _forget(claimed)
                continue
            lines = [ln for ln in data.split(b"\n") if ln]
            return Claim(claimed, path, lines)
        return None

    def recover(self) -> int:
        """Release claims of dead processes and delete stale temp files.

        Returns:
            How many claims were released.
        """
        released = 0
        now = time.time()
        try:
            entries = list(os.scandir(self.dir))
        except OSError:
            return 0
        for e in entries:
            try:
                age = now - e.stat().st_mtime
            except FileNotFoundError:
                continue
            if e.name.endswith(".tmp") and age > _STALE_CLAIM_S:
                _unlink(Path(e.path))
            elif e.name.endswith(".corrupt") and age > self.max_age:
                _unlink(Path(e.path))  # kept a while for inspection, not forever
            elif e.name.endswith(".inflight"):
                base, pid_s, _ = e.name.rsplit(".", 2)
                pid = int(pid_s) if pid_s.isdigit() else -1
                if pid == os.getpid():
                    with _OWN_CLAIMS_LOCK:
                        held = e.path in _OWN_CLAIMS
                    stale = not held
                else:
                    stale = not _pid_alive(pid) or age > 10 * _STALE_CLAIM_S
                if stale:
                    try:
                        os.rename(e.path, self.dir / base)
                        released += 1
                    except FileNotFoundError:
                        pass
        return released

    def _enforce_caps(self, extra_files: int = 0, extra_bytes: int = 0) -> None:
        files = self._ready()
        now = time.time()
        sizes: list[tuple[Path, int, float]] = []
        for p in files:
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            sizes.append((p, st.st_size, st.st_mtime))
        total = sum(s for _, s, _ in sizes)
        count = len(sizes)
        for p, size, mtime in sizes:  # oldest first
            too_old = now - mtime > self.max_age
            too_many = count + extra_files > self.max_files
            too_big = total + extra_bytes > self.max_bytes
            if not (too_old or too_many or too_big):
                break
            if _unlink(p):
                n = _records_in(p.name)
                self.stats.evicted_records += n
                if self._own_prefix in p.name:
                    self._own_evicted["spool_expired" if too_old else "spool_full"] += n
                total -= size
                count -= 1


def _forget(claimed: Path) -> None:
    with _OWN_CLAIMS_LOCK:
        _OWN_CLAIMS.discard(str(claimed))


def _records_in(name: str) -> int:
    try:
        return int(name[: -len(_SUFFIX)].rsplit("-", 1)[1])
    except (ValueError, IndexError):
        return 0


def _unlink(p: Path) -> bool:
    try:
        p.unlink()
    except FileNotFoundError:
        return False
    return True
