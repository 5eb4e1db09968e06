"""Example handler in Python: the fraud check of the order example.

Flags an order whose `total` is above `max_total` (env, default 1000) or whose `country`
is in `blocked_countries` (env, comma-separated) by publishing it to `flagged_topic`
(env, default `order_flagged`) with the reason, as the Rust `fraud` guest does.
"""

import switchyard
from switchyard import Fatal, log


def suspicion(order: dict) -> "str | None":
    text = switchyard.config("max_total", "1000")
    try:
        max_total = float(text)
    except ValueError:
        raise Fatal(f"env max_total is not a number: {text}")
    total = float(order.get("total") or 0)
    if total > max_total:
        return f"total {total:g} is above {max_total:g}"
    country = order.get("country") or ""
    blocked = [c.strip() for c in switchyard.config("blocked_countries", "").split(",")]
    if country and country in blocked:
        return f"country {country} is blocked"
    return None


def handle(event: switchyard.Event) -> None:
    order = event.json()
    order_id = order.get("order_id", event.id)
    reason = suspicion(order)
    if reason is None:
        log.debug(f"order {order_id} looks fine")
        return
    topic = switchyard.config("flagged_topic", "order_flagged")
    switchyard.publish(
        topic,
        {"order_id": order_id, "reason": reason, "order": order},
        attributes={"reason": reason},
    )
    log.warn(f"order {order_id} flagged: {reason}")


WitWorld = switchyard.world(handle)
