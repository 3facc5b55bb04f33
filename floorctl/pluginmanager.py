"""Build the plugin manager: specs, built-in plugins, entry points, check_pending()."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from typing import Any

import pluggy

from floorctl import hookspecs
from floorctl.kinds import KindRegistry

PROJECT = "floorctl"
ENTRY_POINT_GROUP = "floorctl"
DISABLE_AUTOLOAD_ENV = "FLOORCTL_DISABLE_PLUGIN_AUTOLOAD"

#: Built-in plugins, by the same names they carry as entry points in pyproject.toml.
BUILTIN_PLUGINS: dict[str, str] = {
    "generic": "floorctl.plugins.generic",
    "balances": "floorctl.plugins.balances",
    "environment": "floorctl.plugins.environment",
    "equipment": "floorctl.plugins.equipment",
}


def get_plugin_manager(
    *, autoload: bool | None = None, plugins: Iterable[object] = ()
) -> pluggy.PluginManager:
    """A fresh plugin manager with every hook spec, the built-ins and installed plugins.

    :param autoload: load third-party plugins from the ``floorctl`` entry-point group; by
        default on unless ``FLOORCTL_DISABLE_PLUGIN_AUTOLOAD`` is set.
    :param plugins: extra plugin objects to register (tests use this).
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    for name, module in BUILTIN_PLUGINS.items():
        pm.register(importlib.import_module(module), name=name)
    if autoload is None:
        autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    if autoload:
        # Skips names already registered, so the built-ins' own entry points are no-ops.
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for plugin in plugins:
        pm.register(plugin)
    pm.check_pending()
    return pm


def collect_kinds(pm: pluggy.PluginManager) -> KindRegistry:
    """Ask every plugin for its kinds; each kind remembers which plugin registered it."""
    registry = KindRegistry()
    args = {"registry": registry}
    for impl in pm.hook.floorctl_register_kinds.get_hookimpls():
        registry.current_plugin = impl.plugin_name
        # pluggy lets an implementation take fewer arguments than the spec
        impl.function(*(args[name] for name in impl.argnames))
    registry.current_plugin = "?"
    return registry


def plugin_names(pm: pluggy.PluginManager) -> list[tuple[str, str, list[str]]]:
    """(name, distribution or module, hooks implemented) for every registered plugin."""
    dists = {
        id(plugin): f"{dist.project_name} {dist.version}"
        for plugin, dist in pm.list_plugin_distinfo()
    }
    rows = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        origin = dists.get(id(plugin)) or getattr(plugin, "__name__", type(plugin).__name__)
        rows.append((name, origin, hooks))
    return sorted(rows)


def isolated_calls(
    pm: pluggy.PluginManager, hook_name: str
) -> list[tuple[str, Callable[..., Any], tuple[str, ...]]]:
    """(plugin name, function, argument names) of every implementation of a notification hook,
    so the daemon can call each one on its own: one plugin raising must not stop the others
    (a plain pluggy hook call stops at the first exception)."""
    hook = getattr(pm.hook, hook_name)
    return [
        (impl.plugin_name, impl.function, tuple(impl.argnames)) for impl in hook.get_hookimpls()
    ]
