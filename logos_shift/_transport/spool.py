"""The disk spool: batches that could not be uploaded wait here, across restarts.

Each file is exactly one ready-to-send batch, a gzip member of JSON lines
(readable with ``zcat | jq``); the gzip CRC catches torn writes.  A file is
written as ``.tmp``, flushed, fsync'd and renamed, so a reader never sees half
a batch.  Several processes may share a spool directory: a batch is *claimed*
by renaming it to ``<name>.<pid>-<start>.inflight`` (atomic, so exactly one
claimant wins; ``start`` is the claimant's process start time, so a reused pid
is not mistaken for the owner), deleted once the server has it, and renamed
back if the upload fails.  A claim is released when its owner is gone (pid not
running, or running with another start time), never because of its age: a
claim only lives while its upload does.

Names are ``<created_ms>-<pid>-<writer>-<rand>-<records>.jsonl.gz`` so the oldest batch
sorts first and the record count is known without opening the file.

The directory heals: anything else in it (other names, FIFOs, directories,
symlinks, absurd pids) is skipped and counted, never opened blocking, never
allowed to stop the sweep; a batch this process cannot read (another user's
file) is retried later rather than quarantined; a batch that does not decode
is quarantined as ``.corrupt`` (listed in ``stats()``; ``logos-shift spool
replay`` puts it back after a fix).  A ``config-error.json`` marker says the
server refused this destination's key or URL (401/403/404): a process sending
to the same server under another key or URL, not marked itself, adopts such
batches (:meth:`Spool.adopt`).
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import stat
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from logos_shift import _guard

_SUFFIX = ".jsonl.gz"
_STALE_TMP_S = 60.0
_UNREADABLE_RETRY_S = 30.0
_MAX_PID = 1 << 22  # Linux's pid_max ceiling; larger numbers cannot be a pid
_NAME = re.compile(r"^\d{13}-\d+-[0-9a-f]+-[0-9a-f]+-\d{1,9}\.jsonl\.gz$")
_CLAIM = re.compile(r"^(?P<base>.+\.jsonl\.gz)\.(?P<pid>\d+)(?:-(?P<start>\d{1,20}))?\.inflight$")
CONFIG_MARKER = "config-error.json"

# Claims this process holds right now, across every Spool object.  A claim
# file carrying this process's pid but missing here was left by an earlier
# process that had the same pid (a container's app is often pid 1 on every
# start), so recover() releases it instead of waiting for it forever.
_OWN_CLAIMS: set[str] = set()
_OWN_CLAIMS_LOCK = threading.Lock()


def _pid_alive(pid: int) -> bool:
    if pid <= 0 or pid >= _MAX_PID:  # 0/-1 would ask about whole process groups
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, OSError):
        return False
    return True


def start_time(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (Linux), or None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
        # The command name (field 2) may hold spaces and parentheses: split after it.
        return int(data[data.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


_own_owner: tuple[int, str] | None = None


def _owner_tag() -> str:
    """``<pid>-<start>`` of this process (``<pid>`` where start times are unknown)."""
    global _own_owner
    pid = os.getpid()
    if _own_owner is None or _own_owner[0] != pid:
        start = start_time(pid)
        _own_owner = (pid, str(pid) if start is None else f"{pid}-{start}")
    return _own_owner[1]


def _owner_alive(pid: int, start: int | None) -> bool:
    if not _pid_alive(pid):
        return False
    if start is None:
        return True  # a claim without a start time: the pid alone decides
    now = start_time(pid)
    return now is None or now == start


def _is_regular(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file(follow_symlinks=False)
    except OSError:
        return False


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
    skipped_files: int = 0  # names, pids or file types that are not ours, left alone
    unreadable_files: int = 0  # batches this process could not read (retried later)
    adopted_files: int = 0  # batches taken over from a destination with a config error


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
        self._skipped: set[str] = set()
        self._retry_at: dict[str, float] = {}
        #: The server refused this destination's key or URL (a marker file says so).
        self.config_error = (directory / CONFIG_MARKER).exists()
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

    def _ready(self, directory: Path | None = None) -> list[Path]:
        """Batches waiting in ``directory`` (default: ours), oldest first.

        Only regular files with a name of ours count; anything else is
        skipped (and counted once), so no file type or name can block a read.
        """
        directory = self.dir if directory is None else directory
        now = time.monotonic()
        names = []
        try:
            with os.scandir(directory) as it:
                for e in it:
                    name = e.name
                    if not name.endswith(_SUFFIX):
                        continue
                    if not _NAME.match(name) or not _is_regular(e):
                        self._skip(name)
                        continue
                    retry = self._retry_at.get(name)
                    if retry is not None and now < retry:
                        continue
                    names.append(name)
        except OSError:  # missing, not a directory, not readable: nothing to replay
            return []
        return [directory / n for n in sorted(names)]

    def batches(self) -> list[Path]:
        """The batch files waiting (not claimed), oldest first."""
        return self._ready()

    def _skip(self, name: str) -> None:
        if name not in self._skipped and len(self._skipped) < 10_000:
            self._skipped.add(name)
            self.stats.skipped_files += 1

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
            claimed = path.with_name(f"{path.name}.{_owner_tag()}.inflight")
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
                raw = _read_regular(claimed)
            except (PermissionError, _NotRegular) as exc:
                # Not ours to read (another user's 0600 file) or swapped for a
                # FIFO: put it back and look again later; never quarantine it.
                self._retry_at[path.name] = time.monotonic() + _UNREADABLE_RETRY_S
                if isinstance(exc, PermissionError):
                    self.stats.unreadable_files += 1
                else:
                    self._skip(path.name)
                try:
                    os.rename(claimed, path)
                except OSError:
                    pass
                _forget(claimed)
                continue
            except OSError:
                self._retry_at[path.name] = time.monotonic() + _UNREADABLE_RETRY_S
                self.stats.unreadable_files += 1
                try:
                    os.rename(claimed, path)
                except OSError:
                    pass
                _forget(claimed)
                continue
            self._retry_at.pop(path.name, None)
            try:
                data = gzip.decompress(raw)
            except (EOFError, zlib.error, gzip.BadGzipFile):
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
        """Release claims of gone processes and delete stale temp files.

        A claim's owner is judged by its pid and process start time, not by
        the file's age.  Entries that are not ours (any name, pid or file
        type) are skipped; one bad entry never stops the sweep.

        Returns:
            How many claims were released.
        """
        released = 0
        now = time.time()
        try:
            with os.scandir(self.dir) as it:
                entries = list(it)
        except OSError:
            return 0
        for e in entries:
            try:
                released += self._recover_entry(e, now)
            except (OSError, ValueError, OverflowError):
                self._skip(e.name)
        return released

    def _recover_entry(self, e: os.DirEntry[str], now: float) -> int:
        name = e.name
        if not name.endswith((".tmp", ".corrupt", ".inflight")):
            return 0
        if not _is_regular(e):
            self._skip(name)
            return 0
        age = now - e.stat(follow_symlinks=False).st_mtime
        if name.endswith(".tmp"):
            if age > _STALE_TMP_S:
                _unlink(Path(e.path))
            return 0
        if name.endswith(".corrupt"):
            if age > self.max_age:
                _unlink(Path(e.path))  # kept a while for inspection, not forever
            return 0
        m = _CLAIM.match(name)
        if m is None or not _NAME.match(m["base"]):
            self._skip(name)
            return 0
        pid = int(m["pid"])
        start = int(m["start"]) if m["start"] else None
        if pid == os.getpid():
            with _OWN_CLAIMS_LOCK:
                held = e.path in _OWN_CLAIMS
            stale = not held
        else:
            stale = not _owner_alive(pid, start)
        if not stale:
            return 0
        try:
            os.rename(e.path, self.dir / m["base"])
        except FileNotFoundError:
            return 0
        return 1

    # -- quarantine and configuration errors -------------------------------------

    def quarantined(self, limit: int = 100) -> list[str]:
        """Paths of the batches set aside as corrupt (at most ``limit``)."""
        try:
            with os.scandir(self.dir) as it:
                names = sorted(e.name for e in it if e.name.endswith(".corrupt"))
        except OSError:
            return []
        return [str(self.dir / n) for n in names[:limit]]

    def requeue_quarantined(self) -> tuple[int, int]:
        """Put quarantined batches that decode now back in line.

        Returns:
            ``(requeued, still_corrupt)`` file counts.
        """
        requeued = bad = 0
        for q in self.quarantined(limit=1_000_000):
            path = Path(q)
            base = path.name[: -len(".corrupt")]
            m = _CLAIM.match(base)
            original = m["base"] if m else base
            try:
                gzip.decompress(_read_regular(path))
            except (OSError, EOFError, zlib.error, _NotRegular):
                bad += 1
                continue
            try:
                os.rename(path, self.dir / original)
            except OSError:
                bad += 1
                continue
            requeued += 1
        return requeued, bad

    def mark_config_error(self, origin: str) -> None:
        """Note on disk that the server at ``origin`` refused this destination's key or URL."""
        if self.config_error:
            return
        self._prepare()
        doc = {"origin": origin, "since": time.time()}
        tmp = self.dir / f".{CONFIG_MARKER}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self.dir / CONFIG_MARKER)
        self.config_error = True

    def clear_config_error(self) -> None:
        """The server accepts this destination again: remove the marker."""
        self.config_error = False
        _unlink(self.dir / CONFIG_MARKER)

    def adopt(self, origin: str) -> int:
        """Take over batches that the server at ``origin`` refused for a configuration error.

        They wait in sibling destinations (another key, or a wrong path on the
        same server) marked with ``config-error.json``; this process's key and
        URL are taken to be the fix (if the server refuses them too, this
        spool is marked in turn and the batches wait for the next process).

        Returns:
            How many batch files were moved into this spool.
        """
        moved = 0
        try:
            with os.scandir(self.dir.parent) as it:
                siblings = [Path(e.path) for e in it if e.is_dir(follow_symlinks=False)]
        except OSError:
            return 0
        for sib in siblings:
            if sib == self.dir:
                continue
            try:
                doc = json.loads((sib / CONFIG_MARKER).read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(doc, dict) or doc.get("origin") != origin:
                continue
            self._prepare()
            for path in self._ready(sib):
                try:
                    os.rename(path, self.dir / path.name)
                except OSError:
                    continue
                moved += 1
        self.stats.adopted_files += moved
        return moved

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


class _NotRegular(OSError):
    """A spool entry that is not a regular file (a FIFO, a device, a directory)."""


def _read_regular(path: Path) -> bytes:
    """Read a file that must be regular, without ever blocking on a FIFO."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _NotRegular(f"{path} is not a regular file")
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


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
