// Switchyard handlers in JavaScript: the `switchyard:handler` world made idiomatic.
//
// A handler module exports `handle` and `handleBatch` made from one function:
//
//     import { handler, log } from "./switchyard.js";
//     export const { handle, handleBatch } = handler((event) => {
//       log.info(`order ${event.json().order_id}`);
//     });
//
// `componentize-js app.js --wit ../../wit --world-name handler -o app.wasm` makes the
// component. The function returns to succeed; it throws `Retryable` for a transient
// failure (the router delivers the event again after a backoff) or `Fatal` for an event
// that can never be processed (it goes to the dead-letter queue without retrying). Any
// other exception counts as retryable, with its message. `handleBatch`, for queue and
// stream sources, calls the function for each event and reports those that failed.

import {
  config as hostConfig,
  log as hostLog,
  publish as hostPublish,
} from "switchyard:handler/host@0.1.0";

/** A transient failure: the event is delivered again after a backoff. */
export class Retryable extends Error {
  constructor(message) {
    super(message);
    this.name = "Retryable";
  }
}

/** The event can never be processed: it goes to the dead-letter queue. */
export class Fatal extends Error {
  constructor(message) {
    super(message);
    this.name = "Fatal";
  }
}

/** One event delivered to the function. */
export class Event {
  constructor(raw) {
    this.id = raw.id;
    this.topic = raw.topic;
    this.subscription = raw.subscription;
    /** When the router accepted it, in milliseconds since the Unix epoch. */
    this.publishedAt = Number(raw.publishedAt);
    /** How many times it has been handed to a function, this attempt included. */
    this.receiveCount = raw.receiveCount;
    /** The body: a string, or a Uint8Array for a binary one. */
    this.body = raw.body.val;
    this.attributes = {};
    for (const a of raw.attributes) {
      this.attributes[a.name] =
        a.value.tag === "number" ? Number(a.value.val) : a.value.val;
    }
  }

  /** The body as text, if it is text. */
  get text() {
    return typeof this.body === "string" ? this.body : undefined;
  }

  /** The body parsed as JSON; a body that is not JSON is `Fatal`. */
  json() {
    if (this.text === undefined) {
      throw new Fatal(`event ${this.id} has a binary body`);
    }
    try {
      return JSON.parse(this.text);
    } catch (e) {
      throw new Fatal(`event ${this.id} is not JSON: ${e.message}`);
    }
  }
}

/** Log lines of this invocation, at a level each. */
export const log = Object.fromEntries(
  ["trace", "debug", "info", "warn", "error"].map((level) => [
    level,
    (message) => hostLog(level, String(message)),
  ]),
);

function attribute(name, value) {
  let v;
  if (typeof value === "number") v = { tag: "number", val: String(value) };
  else if (value instanceof Uint8Array) v = { tag: "binary", val: value };
  else if (Array.isArray(value)) v = { tag: "string-array", val: value.map(String) };
  else v = { tag: "string", val: String(value) };
  return { name, value: v };
}

/**
 * Publishes an event once this invocation succeeds (an object is sent as JSON).
 * Throws `Fatal` at once for an unknown topic, invalid options or past the
 * invocation's publish limits.
 */
export function publish(topic, body, { attributes = {}, groupId, dedupId } = {}) {
  if (typeof body !== "string" && !(body instanceof Uint8Array)) {
    body = JSON.stringify(body);
  }
  const wit =
    typeof body === "string" ? { tag: "text", val: body } : { tag: "bytes", val: body };
  const attrs = Object.entries(attributes).map(([k, v]) => attribute(k, v));
  try {
    hostPublish(topic, wit, attrs, { groupId, dedupId });
  } catch (e) {
    throw new Fatal(`cannot publish to ${topic}: ${e.payload ?? e.message}`);
  }
}

/** The value of `key` in the function's `env`, or `fallback`. */
export function config(key, fallback) {
  return hostConfig(key) ?? fallback;
}

function witError(e) {
  if (e instanceof Fatal) return { tag: "fatal", val: e.message };
  if (e instanceof Retryable) return { tag: "retryable", val: e.message };
  return { tag: "retryable", val: `${e?.name ?? "Error"}: ${e?.message ?? e}` };
}

/** The `handle` and `handleBatch` exports, calling `fn` for each event. */
export function handler(fn) {
  return {
    handle(raw) {
      try {
        fn(new Event(raw));
      } catch (e) {
        // A thrown value with a `payload` becomes the export's error.
        throw { payload: witError(e) };
      }
    },
    handleBatch(raws) {
      const failures = [];
      raws.forEach((raw, index) => {
        try {
          fn(new Event(raw));
        } catch (e) {
          failures.push({ index, error: witError(e) });
        }
      });
      return { failures };
    },
  };
}
