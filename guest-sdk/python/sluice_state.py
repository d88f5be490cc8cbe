"""Handler state for Python handlers: keys in Redis read and written with the entry's
commit (WIT `sluice:plugin/state`). A plugin that imports this module is built for the
world `stateful-handler` (scripts/build-plugins.sh picks it) and runs only in pipelines
that declare `state` prefixes.

    import sluice_state as state
    state.hset(f"order:{order_id}", "orderStatusCode", "3")
    state.add(f"user-total:{user_id}", cents)

A call that fails raises the matching failure (`sluice.Reject` for a key outside the
prefixes or of another type, `sluice.Retry` when Redis cannot be read), and the entry
fails whatever the handler then does. Values are str or bytes; reads give str.
"""

from typing import Dict, Optional

from componentize_py_types import Err
from wit_world.imports import state as _wit

import sluice


def _bytes(value) -> bytes:
    return value if isinstance(value, (bytes, bytearray)) else str(value).encode()


def _text(value: Optional[bytes]) -> Optional[str]:
    return None if value is None else bytes(value).decode("utf-8", "replace")


def _call(f, *args):
    try:
        return f(*args)
    except Err as e:
        error = e.value
        reason = str(getattr(error, "value", error))
        if type(error).__name__.endswith("Unavailable"):
            raise sluice.Retry(reason)
        raise sluice.Reject(reason)


def get(key: str) -> Optional[str]:
    """The string value of `key` as text (GET); None when absent."""
    return _text(_call(_wit.get, key))


def set(key: str, value) -> None:  # noqa: A001 - the Redis command's name
    """Sets `key` (SET), applied with the entry's commit."""
    _call(_wit.set, key, _bytes(value))


def delete(key: str) -> None:
    """Removes `key` (DEL), applied with the entry's commit."""
    _call(_wit.delete, key)


def incr(key: str, delta: int) -> int:
    """Adds `delta` to the integer in `key` and returns the sum (INCRBY, read and checked)."""
    return _call(_wit.incr, key, delta)


def add(key: str, delta: int) -> None:
    """Adds `delta` to the integer in `key` at the commit, unread: no conflicts."""
    _call(_wit.add, key, delta)


def hget(key: str, field: str) -> Optional[str]:
    """Field `field` of the hash `key` as text (HGET); None when absent."""
    return _text(_call(_wit.hget, key, field))


def hset(key: str, field: str, value) -> None:
    """Sets `field` of the hash `key` (HSET), applied with the entry's commit."""
    _call(_wit.hset, key, field, _bytes(value))


def hgetall(key: str) -> Dict[str, str]:
    """Every field of the hash `key` as text, sorted by name (HGETALL)."""
    return {f: _text(v) for f, v in _call(_wit.hgetall, key)}
