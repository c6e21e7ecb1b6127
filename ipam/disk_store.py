"""The Store on disk: `<dataDir>/<network name>/`, one file per reserved address.

Layout (host-local's, so operators can switch either way):
- `<address>`: the reservation, JSON `{"containerID", "ifname", "netns",
  "created"}`. host-local's `containerID\\r\\nifname` records are read too.
- `last_reserved_ip.<range set index>`: the address handed out last, as text.
- `lock`: the flock file every read-modify-write holds.
- `.tmp-*`: a write in progress; only a crashed writer leaves one behind.

Every write goes to a temp file that is renamed over the record: a crash
leaves the old record or the new one, never a torn one. Reservations are
fsynced, file and directory, before the ADD answers; the last_reserved hint
is not, since losing it only moves where the next search starts.
"""

from __future__ import annotations

import errno
import ipaddress
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress

from cni_calico_py.core import files, locks
from cni_calico_py.core.errors import CNIError, Code
from cni_calico_py.core.logs import log
from cni_calico_py.core.results import IPAddress

from .records import LAST_RESERVED_PREFIX, LOCK_NAME, listdir, read_record, record_paths, record_text
from .store import Reservation

TMP_PREFIX = files.TEMP_PREFIX
PROBE_PREFIX = ".probe-"
# STATUS writes this much to prove an ADD could write its record: a record
# with a netns path as long as Linux allows and a long container ID.
PROBE_RECORD = Reservation("c" * 1024, "eth0" + "x" * 11, "/" + "n" * 4095, 0.0,
                           pod="n" * 63 + "/" + "p" * 253)


class DiskStore:
    def __init__(self, directory: str, lock_timeout: float) -> None:
        self.directory = directory
        self.lock_timeout = lock_timeout

    @property
    def lock_path(self) -> str:
        return os.path.join(self.directory, LOCK_NAME)

    def locked(self) -> AbstractContextManager[None]:
        return self._locked()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            os.makedirs(self.directory, exist_ok=True)
        except OSError as err:
            raise CNIError(Code.IO_FAILURE, f"cannot create the IPAM store {self.directory}: "
                           f"{err.strerror}", self.directory) from None
        with locks.held(
            self.lock_path, self.lock_timeout,
            busy=f"the IPAM store lock {self.lock_path} is still held by another process after "
                 f"{self.lock_timeout:g} s (ipam.lockTimeoutSeconds); try again later",
            where="the IPAM store lock was taken",
        ):
            self._remove_stray_temp_files()
            yield

    def reservations(self) -> dict[IPAddress, Reservation]:
        found: dict[IPAddress, Reservation] = {}
        for address, path in record_paths(self.directory):
            record = read_record(path)
            if record is not None:
                found[address] = record
        return found

    def reserve(self, address: IPAddress, reservation: Reservation) -> None:
        try:
            self._write(str(address), record_text(reservation))
        except OSError as err:
            raise self._write_failure(f"cannot write the reservation of {address}", err) from None

    def release(self, address: IPAddress) -> None:
        try:
            os.unlink(os.path.join(self.directory, str(address)))
        except FileNotFoundError:
            return
        self._sync_directory()

    def last_reserved(self, range_set: int) -> IPAddress | None:
        path = os.path.join(self.directory, f"{LAST_RESERVED_PREFIX}{range_set}")
        try:
            with open(path, encoding="utf-8") as file:
                return ipaddress.ip_address(file.read().strip())
        except (OSError, ValueError):
            # Only a hint for where to start: without it allocation starts at the beginning.
            return None

    def set_last_reserved(self, range_set: int, address: IPAddress) -> None:
        # Only where the next search starts: losing it in a crash costs nothing,
        # so it is replaced atomically but not synced to disk, and a failed
        # write (a full disk) only costs the hint.
        try:
            self._write(f"{LAST_RESERVED_PREFIX}{range_set}", str(address), durable=False)
        except OSError as err:
            log.warning("cannot remember the last reserved address in %s: %s", self.directory,
                        err.strerror or err)

    def unwritable(self) -> str:
        """Why no reservation can be written now, found by writing one: the largest
        record a request can make, synced to disk, in the store's own directory."""
        try:
            os.makedirs(self.directory, exist_ok=True)
            self._probe_write()
        except OSError as err:
            return str(self._write_failure("a reservation cannot be written", err))
        return ""

    def _probe_write(self) -> None:
        payload = record_text(PROBE_RECORD).encode()
        try:
            # An unnamed file proves writability without a name a lock holder could
            # mistake for a crashed writer's temp file.
            fd = os.open(self.directory, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600)
            name = None
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EISDIR):
                raise
            # A file system without O_TMPFILE: a named file no record or temp file is called.
            name = os.path.join(self.directory, f"{PROBE_PREFIX}{os.urandom(4).hex()}")
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
            if name is not None:
                with suppress(OSError):
                    os.unlink(name)

    def _write_failure(self, what: str, err: OSError) -> CNIError:
        """Error 5; a full disk is named as such, since freeing space is the cure."""
        reason = err.strerror or str(err)
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            reason = (f"the IPAM store {self.directory} is full ({reason}): free space on the "
                      "file system holding it")
        else:
            reason = f"the IPAM store {self.directory} is not writable ({reason})"
        return CNIError(Code.IO_FAILURE, f"{what}: {reason}", self.directory)

    def _write(self, name: str, text: str, durable: bool = True) -> None:
        files.replace(os.path.join(self.directory, name), text, durable=durable)

    def _sync_directory(self) -> None:
        files.sync_directory(self.directory)

    def _remove_stray_temp_files(self) -> None:
        # Writers only write while holding the lock, so any temp file seen by
        # the holder belongs to a writer that died.
        for name in listdir(self.directory):
            if name.startswith(TMP_PREFIX):
                with suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.directory, name))
