"""The one exception type every store failure is reported with."""

from __future__ import annotations


class StoreError(Exception):
    """A factor store is missing, corrupt, incomplete, of an unknown schema, or misused.

    The message always names the store and says what a person can do about it.
    """
