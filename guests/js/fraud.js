// Example handler in JavaScript: the fraud check of the order example.
//
// Flags an order whose `total` is above `max_total` (env, default 1000) or whose
// `country` is in `blocked_countries` (env, comma-separated) by publishing it to
// `flagged_topic` (env, default `order_flagged`) with the reason, as the Rust `fraud`
// guest does.

import { Fatal, config, handler, log, publish } from "./switchyard.js";

function suspicion(order) {
  const text = config("max_total", "1000");
  const maxTotal = Number(text);
  if (Number.isNaN(maxTotal)) throw new Fatal(`env max_total is not a number: ${text}`);
  const total = Number(order.total ?? 0);
  if (total > maxTotal) return `total ${total} is above ${maxTotal}`;
  const blocked = config("blocked_countries", "").split(",").map((c) => c.trim());
  if (order.country && blocked.includes(order.country)) {
    return `country ${order.country} is blocked`;
  }
  return undefined;
}

export const { handle, handleBatch } = handler((event) => {
  const order = event.json();
  if (order === null || typeof order !== "object") {
    throw new Fatal(`event ${event.id} is not an order object`);
  }
  const orderId = order.order_id ?? event.id;
  const reason = suspicion(order);
  if (reason === undefined) {
    log.debug(`order ${orderId} looks fine`);
    return;
  }
  const topic = config("flagged_topic", "order_flagged");
  publish(topic, { order_id: orderId, reason, order }, { attributes: { reason } });
  log.warn(`order ${orderId} flagged: ${reason}`);
});
