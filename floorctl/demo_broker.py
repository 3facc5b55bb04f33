"""The demo's embedded MQTT broker: amqtt in this event loop, on a free 127.0.0.1 port.

For ``floorctl demo`` on a machine without a broker, and for tests of the demo. It is not a
production broker (docs/tui.md, "The demo"): amqtt speaks MQTT 3.1.1 only (an MQTT 5 client
is refused with "Unsupported protocol version"), and it costs about 100 us of CPU per message
at QoS 0 and 200 us at QoS 1, 10 to 20 times what mosquitto costs: fine for a demo floor,
not for a plant.

What floorctl needs from a broker and amqtt 0.12 does, checked against aiomqtt:
QoS 0 and 1, retained messages (and clearing them), the daemon's will, and persistent
sessions (``clean_session = false``, the daemon's default). amqtt keeps no session for an
*anonymous* client, and its stock ``AnonymousAuthPlugin`` marks every client anonymous; the
:class:`LoopbackAuthPlugin` here accepts every client (the listener is on 127.0.0.1 only)
without marking it anonymous, so persistent sessions work as with mosquitto.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from typing import Any

from amqtt.broker import Broker
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session

__all__ = ["EmbeddedBroker", "LoopbackAuthPlugin", "free_ports"]

log = logging.getLogger("floorctl.demo.broker")

#: amqtt and the state machine library under it log every connection at INFO
_NOISY_LOGGERS = ("amqtt", "transitions")


class LoopbackAuthPlugin(BaseAuthPlugin):
    """Accepts every client, as a named one: amqtt then keeps persistent sessions (and queues
    QoS 1 messages for them while they are away), which it never does for anonymous clients.
    Only for a listener on the loopback interface."""

    @dataclass
    class Config:
        """No options."""

    async def authenticate(self, *, session: Session) -> bool | None:
        return True


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free TCP ports (the sockets are held open together, so they
    differ). Another process may still take one before it is bound: callers retry."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class BrokerStartError(RuntimeError):
    """The embedded broker could not listen."""


class _SnapshotDict(dict):  # type: ignore[type-arg]
    """A dict whose iteration works on a copy, so that it may change meanwhile."""

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(super().keys()))

    def keys(self):  # type: ignore[no-untyped-def, override]
        return list(super().keys())

    def values(self):  # type: ignore[no-untyped-def, override]
        return list(super().values())

    def items(self):  # type: ignore[no-untyped-def, override]
        return list(super().items())


class EmbeddedBroker:
    """An amqtt broker listening on ``host``:``port`` (a free port when ``port`` is 0), in the
    running event loop: ``await start()`` ... ``await stop()``, or ``async with``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._broker: Broker | None = None

    def _config(self, port: int) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{port}"}},
            # only the authentication plugin: no $SYS topics, no packet logging
            "plugins": {f"{__name__}.LoopbackAuthPlugin": {}},
        }

    async def start(self, attempts: int = 5) -> None:
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        last: BaseException | None = None
        for _ in range(attempts):
            port = self.port or free_ports(1, self.host)[0]
            broker = Broker(self._config(port))
            # amqtt 0.12 iterates its subscription table across awaits (retained messages on
            # connect, broadcasts) while other clients subscribe: "dictionary changed size
            # during iteration" dropped the connecting client (the demo UI's history queries
            # timed out). Iterating over a snapshot is what those loops mean to do.
            broker._subscriptions = _SnapshotDict()
            try:
                await broker.start()
            except Exception as exc:  # the port was taken meanwhile: amqtt wraps the OSError
                last = exc
                if self.port:
                    break
                continue
            self._broker = broker
            self.port = port  # amqtt's start() returns once the listener is bound
            log.info("embedded MQTT broker (amqtt) on %s:%d", self.host, self.port)
            return
        raise BrokerStartError(f"the embedded MQTT broker could not listen on {self.host}: {last}")

    async def stop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.shutdown()

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
