"""Builds the plugin manager: hookspecs, built-in plugins, then third-party entry points."""

from __future__ import annotations

import importlib
import logging
import os
import re
from collections.abc import Callable, Iterable
from types import ModuleType

import pluggy

from app import hookspecs
from app.domain.storage import BackendFactory

log = logging.getLogger(__name__)

BUILTIN_PLUGINS = (
    "plugins.auth_personal_token",
    "plugins.auth_deploy_token",
    "plugins.auth_job_token",
    "plugins.oidc_publishing",
    "plugins.oidc_sign_in",
    "plugins.auth_session",
    "plugins.auth_anonymous",
    "plugins.storage_file",
    "plugins.storage_s3",
)
ENTRY_POINT_GROUP = "packyard.plugins"
HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")  # what WSGI maps to HTTP_* unambiguously


def get_plugin_manager(
    load_entrypoints: bool = True, extra_plugins: Iterable[object] = ()
) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("packyard")
    pm.add_hookspecs(hookspecs)
    for name in BUILTIN_PLUGINS:
        module: ModuleType = importlib.import_module(name)
        pm.register(module, name=name)
    for plugin in extra_plugins:
        pm.register(plugin)
    if load_entrypoints:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    pm.check_pending()
    if os.environ.get("PACKYARD_TRACE_PLUGINS"):
        pm.trace.root.setwriter(lambda message: log.warning("plugin: %s", message.rstrip()))
        pm.enable_tracing()
    return pm


def storage_factories(pm: pluggy.PluginManager) -> dict[str, BackendFactory]:
    """Collect storage backends; a scheme claimed twice fails loudly."""
    factories: dict[str, BackendFactory] = {}
    owners: dict[str, str] = {}
    for impl in pm.hook.register_storage_backends.get_hookimpls():

        def register(scheme: str, factory: Callable, _owner: str = impl.plugin_name) -> None:
            if scheme in factories:
                raise ValueError(
                    f"Storage scheme {scheme!r} registered by both {owners[scheme]} and {_owner}"
                )
            factories[scheme], owners[scheme] = factory, _owner

        impl.function(register=register)
    return factories


def credential_headers(pm: pluggy.PluginManager) -> tuple[str, ...]:
    """The request headers plugins identify callers by, lower case, each once."""
    headers: dict[str, None] = {}
    for impl in pm.hook.register_credential_headers.get_hookimpls():

        def register(name: str, _owner: str = impl.plugin_name) -> None:
            if not isinstance(name, str) or not HEADER_NAME.fullmatch(name):
                raise ValueError(f"{_owner} registered {name!r}, which is not a header name")
            if name.lower() == "cookie":
                raise ValueError(f"{_owner} registered Cookie: cookies are never cached")
            headers[name.lower()] = None

        impl.function(register=register)
    return tuple(headers)
