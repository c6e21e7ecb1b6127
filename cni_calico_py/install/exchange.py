"""Two paths swapped in one step: renameat2(2) with RENAME_EXCHANGE.

rename(2) cannot put a directory in place of a non-empty one, so replacing a
whole directory otherwise takes two renames with a moment between them when
neither version is there. Python has no binding for renameat2; the C
library has had one since glibc 2.28.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable

_AT_FDCWD = -100
_RENAME_EXCHANGE = 1 << 1
# What a kernel, filesystem or C library without the exchange answers.
_UNSUPPORTED = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP)


def _renameat2() -> Callable[..., int] | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def exchange(first: str, second: str) -> bool:
    """Swap what the two existing paths name, or False (changing nothing) where the
    system cannot; any other failure raises OSError."""
    function = _renameat2()
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), second)
