"""floorctl: the production-floor controller for 503B outsourcing facilities."""

import pluggy

__version__ = "0.1.0"

#: Marker for plugin hook implementations: ``@hookimpl def floorctl_register_kinds(registry): ...``
hookimpl = pluggy.HookimplMarker("floorctl")

__all__ = ["__version__", "hookimpl"]
