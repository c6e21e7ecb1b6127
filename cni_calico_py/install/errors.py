"""What stops an installation, worded for the person who has to fix it."""

from __future__ import annotations


class InstallError(Exception):
    """Nothing more is changed on the node once this is raised; the message says what to do."""
