"""Switchyard handlers in Python: the `switchyard:handler` world made idiomatic.

A handler module defines `handle(event)` and exports it with `world()`:

    import switchyard

    def handle(event: switchyard.Event) -> None:
        order = event.json()
        switchyard.log.info(f"order {order['order_id']}")

    WitWorld = switchyard.world(handle)

`componentize-py -d ../../wit -w handler componentize app -p . -o app.wasm` makes the
component. `handle` returns to succeed; it raises `Retryable` for a transient failure
(the router delivers the event again after a backoff) or `Fatal` for an event that can
never be processed (it goes to the dead-letter queue without retrying). Any other
exception counts as retryable, with its type and message. `handle_batch`, for queue and
stream sources, calls `handle` for each event and reports those that failed.
"""

import json as _json
from typing import Any, Callable, Dict, List, Optional, Union

from componentize_py_types import Err
from wit_world.imports import host as _host
from wit_world.imports import types as _t

__all__ = ["Event", "Retryable", "Fatal", "log", "publish", "config", "world"]


class Retryable(Exception):
    """A transient failure: the event is delivered again after a backoff."""


class Fatal(Exception):
    """The event can never be processed: it goes to the dead-letter queue."""


AttributeValue = Union[str, int, float, List[str], bytes]


class Event:
    """One event delivered to the function."""

    def __init__(self, raw: _t.Event):
        self.id: str = raw.id
        self.topic: str = raw.topic
        self.subscription: str = raw.subscription
        self.published_at: int = raw.published_at
        """When the router accepted it, in milliseconds since the Unix epoch."""
        self.receive_count: int = raw.receive_count
        """How many times it has been handed to a function, this attempt included."""
        self.body: Union[str, bytes] = raw.body.value
        self.attributes: Dict[str, AttributeValue] = {
            a.name: _attribute_value(a.value) for a in raw.attributes
        }

    @property
    def text(self) -> Optional[str]:
        """The body as text, if it is text."""
        return self.body if isinstance(self.body, str) else None

    def json(self) -> Any:
        """The body parsed as JSON; a body that is not JSON is `Fatal`."""
        if self.text is None:
            raise Fatal(f"event {self.id} has a binary body")
        try:
            return _json.loads(self.text)
        except ValueError as e:
            raise Fatal(f"event {self.id} is not JSON: {e}") from e


def _attribute_value(v) -> AttributeValue:
    if isinstance(v, _t.AttributeValue_Number):
        text = v.value
        try:
            return int(text)
        except ValueError:
            return float(text)
    return v.value


def _attribute(name: str, value: AttributeValue) -> _t.Attribute:
    if isinstance(value, bool):
        value = str(value).lower()
    if isinstance(value, str):
        v = _t.AttributeValue_String(value)
    elif isinstance(value, (int, float)):
        v = _t.AttributeValue_Number(repr(value))
    elif isinstance(value, bytes):
        v = _t.AttributeValue_Binary(value)
    else:
        v = _t.AttributeValue_StringArray([str(x) for x in value])
    return _t.Attribute(name, v)


class _Log:
    """Log lines of this invocation, at a level each."""

    def trace(self, message: str) -> None:
        _host.log(_t.Level.TRACE, message)

    def debug(self, message: str) -> None:
        _host.log(_t.Level.DEBUG, message)

    def info(self, message: str) -> None:
        _host.log(_t.Level.INFO, message)

    def warn(self, message: str) -> None:
        _host.log(_t.Level.WARN, message)

    def error(self, message: str) -> None:
        _host.log(_t.Level.ERROR, message)


log = _Log()


def publish(
    topic: str,
    body: Union[str, bytes, dict, list],
    attributes: Optional[Dict[str, AttributeValue]] = None,
    group_id: Optional[str] = None,
    dedup_id: Optional[str] = None,
) -> None:
    """Publishes an event once this invocation succeeds (a dict or list is sent as JSON).

    Raises `Fatal` at once for an unknown topic, invalid options or past the
    invocation's publish limits.
    """
    if isinstance(body, (dict, list)):
        body = _json.dumps(body)
    wit_body = _t.Body_Bytes(body) if isinstance(body, bytes) else _t.Body_Text(body)
    attrs = [_attribute(k, v) for k, v in (attributes or {}).items()]
    try:
        _host.publish(topic, wit_body, attrs, _t.PublishOptions(group_id, dedup_id))
    except Err as e:
        raise Fatal(f"cannot publish to {topic}: {e.value}") from None


def config(key: str, default: Optional[str] = None) -> Optional[str]:
    """The value of `key` in the function's `env`."""
    value = _host.config(key)
    return default if value is None else value


def _error(e: Exception) -> _t.Error:
    if isinstance(e, Fatal):
        return _t.Error_Fatal(str(e))
    if isinstance(e, Retryable):
        return _t.Error_Retryable(str(e))
    return _t.Error_Retryable(f"{type(e).__name__}: {e}")


def world(handle: Callable[[Event], None]):
    """The `WitWorld` class componentize-py exports, calling `handle` for each event."""

    class WitWorld:
        def handle(self, event: _t.Event) -> None:
            try:
                handle(Event(event))
            except Exception as e:
                raise Err(_error(e))

        def handle_batch(self, events: List[_t.Event]) -> _t.BatchResult:
            failures = []
            for i, event in enumerate(events):
                try:
                    handle(Event(event))
                except Exception as e:
                    failures.append(_t.ItemFailure(i, _error(e)))
            return _t.BatchResult(failures)

    return WitWorld
