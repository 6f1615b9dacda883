"""Accessors for the services the factory wired into the current app."""

from __future__ import annotations

import pluggy
from flask import current_app

from app.domain.storage import StorageBackend


def plugin_manager() -> pluggy.PluginManager:
    return current_app.extensions["packyard.plugins"]  # type: ignore[no-any-return]


def storage() -> StorageBackend:
    return current_app.extensions["packyard.storage"]  # type: ignore[no-any-return]
