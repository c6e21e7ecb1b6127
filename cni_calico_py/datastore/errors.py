"""What went wrong in the datastore, one class per case a caller handles differently."""

from __future__ import annotations


class DatastoreError(Exception):
    """Base of every datastore failure."""


class AlreadyExists(DatastoreError):
    """A create found the key present."""


class Conflict(DatastoreError):
    """An update or delete carried a revision that is no longer current."""


class NotFound(DatastoreError):
    """The key is not there."""


class DatastoreUnavailable(DatastoreError):
    """No endpoint of the datastore answered, or it refused the request."""


class ResyncNeeded(DatastoreError):
    """A watch cannot go on from its revision (compacted, expired): list again."""


class PoolExhausted(DatastoreError):
    """Every block of the pool has an owner."""
