"""The one error type of the plugin and the CNI error codes."""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class Code(IntEnum):
    """Error codes from the CNI spec, plus this plugin's own (100+)."""

    INCOMPATIBLE_VERSION = 1
    UNSUPPORTED_FIELD = 2
    UNKNOWN_CONTAINER = 3
    INVALID_ENVIRONMENT = 4
    IO_FAILURE = 5
    DECODING_FAILURE = 6
    INVALID_NETWORK_CONFIG = 7
    TRY_AGAIN_LATER = 11
    NOT_AVAILABLE = 50
    LIMITED_CONNECTIVITY = 51
    # Plugin-specific codes start at 100.
    DATAPLANE_FAILURE = 100
    IPAM_FAILURE = 101
    ADDRESS_EXHAUSTED = 102
    ADDRESS_CONFLICT = 103
    CHECK_FAILED = 104
    INTERNAL = 999


class CNIError(Exception):
    """An error that is reported to the runtime as CNI error JSON.

    The code travels unchanged from where the failure is understood to stdout,
    including across the delegation to another IPAM plugin.
    """

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = int(code)
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str) -> dict[str, Any]:
        return {
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
            "details": self.details,
        }

    def __str__(self) -> str:
        return f"{self.msg} ({self.details})" if self.details else self.msg
