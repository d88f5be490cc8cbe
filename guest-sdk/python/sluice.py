"""Sluice SDK for Python handlers, built into a component with componentize-py.

    import sluice

    class WitWorld(sluice.Handler):
        def on_message(self, msg):
            order = msg.require("orderId", "userId")   # rejects if one is missing
            return [sluice.output(sluice.config("target", "OUT"), orderId=order["orderId"])]

`on_message` returns a list of outputs (or None); `raise sluice.Reject(reason)`
dead-letters the message, `raise sluice.Retry(reason)` leaves it pending for a later
delivery. Any other exception traps the instance, which counts as a retry.

A plugin that sends HTTP requests imports `sluice_http` (a synchronous client over
wasi:http) and is built for world `http-handler`, which has no `handle-batch`: the
Handler's `handle_batch` is then simply not exported.
"""

import json
from typing import Dict, List, Optional

import wit_world
from componentize_py_types import Err, Ok
from wit_world.imports import host

try:
    from wit_world.imports import types
except ImportError:
    # A world that also imports wasi:http (http-handler) has two interfaces named
    # `types`: componentize-py names Sluice's after its package.
    from wit_world.imports import sluice_plugin_types as types

__all__ = ["Handler", "Message", "Reject", "Retry", "output", "config", "log"]


class Reject(Exception):
    """Dead-letters the message, with the reason."""


class Retry(Exception):
    """Leaves the message pending for a later delivery, with the reason."""


class Message:
    """One stream entry: its source stream, ID, delivery attempt (1 first) and fields."""

    def __init__(self, raw: types.Message):
        self.source: str = raw.source
        self.id: str = raw.id
        self.attempt: int = raw.attempt
        #: (name, bytes) pairs, in order; names may repeat.
        self.raw = raw.fields

    def bytes(self, name: str) -> Optional[bytes]:
        """The last value of field `name` as bytes, or None."""
        for field, value in reversed(self.raw):
            if field == name:
                return value
        return None

    def text(self, name: str) -> Optional[str]:
        """The last value of field `name` as text (invalid UTF-8 becomes U+FFFD)."""
        value = self.bytes(name)
        return None if value is None else value.decode("utf-8", "replace")

    def json(self, name: str):
        """Field `name` parsed as JSON; a missing or malformed field rejects the message."""
        text = self.text(name)
        if text is None:
            raise Reject(f"missing field `{name}`")
        try:
            return json.loads(text)
        except ValueError as e:
            raise Reject(f"field `{name}` is not JSON: {e}") from None

    def fields(self) -> Dict[str, str]:
        """Every field as text, keyed by name (the last value wins)."""
        return {name: value.decode("utf-8", "replace") for name, value in self.raw}

    def idempotency_key(self) -> str:
        """This entry's idempotency key: 32 hex digits, the same for every delivery of the
        entry to the pipeline's consumer group (a retry, a redelivery after a crash, a
        reclaim), different for every other entry. Send it with a side effect (a payment,
        an e-mail) so that the receiver does it once."""
        return host.idempotency_key(self.id)

    def require(self, *names: str) -> Dict[str, str]:
        """The fields as text, rejecting the message if one of `names` is missing."""
        fields = self.fields()
        for name in names:
            if name not in fields:
                raise Reject(f"message does not have the expected fields: missing field `{name}`")
        return fields


def _to_bytes(value) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value).encode("utf-8")


def output(target: str, /, **fields) -> types.Output:
    """An output entry for stream `target`, its fields in keyword order: str and bytes as
    they are, None skipped, anything else as JSON."""
    return types.Output(
        target, [(name, _to_bytes(value)) for name, value in fields.items() if value is not None]
    )


def config(key: str, fallback: Optional[str] = None) -> Optional[str]:
    """The pipeline's `config` value for `key`, or `fallback`."""
    try:
        value = _config_cache[key]
    except KeyError:
        value = _config_cache[key] = host.config(key)
    return fallback if value is None else value


# An instance lives within one pipeline's config (a changed config restarts the pipeline,
# with new instances): each key is asked of the host once.
_config_cache: Dict[str, Optional[str]] = {}


class _Log:
    """Logs through the host, tagged with the pipeline, plugin and message."""

    def trace(self, message: str) -> None:
        host.log(host.Level.TRACE, str(message))

    def debug(self, message: str) -> None:
        host.log(host.Level.DEBUG, str(message))

    def info(self, message: str) -> None:
        host.log(host.Level.INFO, str(message))

    def warn(self, message: str) -> None:
        host.log(host.Level.WARN, str(message))

    def error(self, message: str) -> None:
        host.log(host.Level.ERROR, str(message))


log = _Log()


class Handler(wit_world.WitWorld):
    """Base class of a handler: name the subclass `WitWorld` and define `on_message`."""

    def on_message(self, msg: Message) -> Optional[List[types.Output]]:
        raise NotImplementedError

    def handle(self, msg: types.Message) -> List[types.Output]:
        try:
            return self.on_message(Message(msg)) or []
        except Reject as e:
            raise Err(types.Failure_Reject(str(e)))
        except Retry as e:
            raise Err(types.Failure_Retry(str(e)))

    def handle_batch(self, msgs: List[types.Message]) -> list:
        """`handle-batch` (world `batch-handler`, sluice:plugin@0.1.2): a share of a batch
        in one call, each message's result what `handle` gives for it. Entering and leaving
        a Python component costs more than a small handler's own work; a batch pays it
        once. `Reject`/`Retry` fail their message only; any other exception fails the
        call, and the host then calls `handle` on each message alone."""
        results = []
        for msg in msgs:
            try:
                results.append(Ok(self.handle(msg)))
            except Err as e:
                results.append(e)
        return results
