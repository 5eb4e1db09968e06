// The Switchyard console: one page, no build step. Everything it shows comes from the
// same /v1 API and /metrics any client uses; the token (when the server asks for one)
// stays in this tab's sessionStorage.
'use strict';

const $ = (selector, root = document) => root.querySelector(selector);
const enc = encodeURIComponent;

/** An element with attributes (`on…` are listeners) and children (strings or nodes). */
function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c !== undefined && c !== null) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

const TOKEN_KEY = 'switchyard-token';

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** Asks for the token in a dialog; resolves once it is given. */
function login() {
  const dialog = $('#login');
  $('#token').value = '';
  dialog.showModal();
  return new Promise((done) => dialog.addEventListener('close', () => {
    sessionStorage.setItem(TOKEN_KEY, $('#token').value);
    done();
  }, { once: true }));
}

/** A fetch that signs in when the server answers 401 and asks again. */
async function request(path, options = {}) {
  for (;;) {
    const res = await fetch(path, { ...options, headers: { ...options.headers, ...authHeaders() } });
    if (res.status !== 401) return res;
    await login();
  }
}

/** A /v1 call: the JSON answer, or an Error naming the server's problem. */
async function api(method, path, body) {
  const options = { method };
  if (body !== undefined) {
    options.headers = { 'Content-Type': 'application/json' };
    options.body = JSON.stringify(body);
  }
  const res = await request(path, options);
  const text = await res.text();
  const data = text && (res.headers.get('content-type') || '').includes('json') ? JSON.parse(text) : text;
  if (!res.ok) throw new Error(data && data.detail ? `${data.title}: ${data.detail}` : `${res.status} ${res.statusText}`);
  return data;
}

/** /metrics as a map from `name{labels}` (labels sorted, as written) to value. */
async function metrics() {
  const res = await request('/metrics');
  const out = new Map();
  for (const line of (await res.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

const key = (name, labels) => `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(',')}}`;

/** Two readings of /metrics apart in time, for rates. */
class Rates {
  constructor() { this.before = null; this.now = null; }
  async read() {
    this.before = this.now;
    this.now = { at: performance.now(), values: await metrics() };
  }
  value(name, labels) { return this.now?.values.get(key(name, labels)); }
  perSecond(name, labels) {
    if (!this.before) return undefined;
    const k = key(name, labels);
    const a = this.before.values.get(k);
    const b = this.now.values.get(k);
    if (a === undefined || b === undefined) return undefined;
    return Math.max(0, (b - a) / ((this.now.at - this.before.at) / 1000));
  }
}

const fmt = (v, unit = '') => (v === undefined ? '–' : `${Number.isInteger(v) ? v : v.toFixed(1)}${unit}`);
const json = (v) => JSON.stringify(v, null, 2);
function parseJson(text, what) {
  try { return text.trim() ? JSON.parse(text) : undefined; } catch (e) { throw new Error(`${what} is not JSON: ${e.message}`); }
}

// Each page returns a cleanup function that stops its timers and streams.
let leave = () => {};

function every(ms, task) {
  let stopped = false;
  const run = async () => {
    if (stopped) return;
    try { await task(); $('#status').textContent = ''; } catch (e) { $('#status').textContent = e.message; }
    if (!stopped) setTimeout(run, ms);
  };
  run();
  return () => { stopped = true; };
}

function endpointOf(spec) {
  const e = spec.endpoint;
  if (e.queue) return { kind: 'queue', name: e.queue, href: `#/queue/${enc(e.queue)}` };
  if (e.stream) return { kind: 'stream', name: e.stream.stream || e.stream, href: `#/stream/${enc(e.stream.stream || e.stream)}` };
  if (e.function) return { kind: 'function', name: e.function, href: `#/function/${enc(e.function)}` };
  if (e.http) return { kind: 'http', name: e.http.url, href: undefined };
  return { kind: 'endpoint', name: JSON.stringify(e) };
}

// ---- Topology -------------------------------------------------------------------------

async function topology(main) {
  const [{ topics }, { subscriptions }, { queues }, { streams }, { functions }] = await Promise.all([
    api('GET', '/v1/topics'), api('GET', '/v1/subscriptions'), api('GET', '/v1/queues'),
    api('GET', '/v1/streams'), api('GET', '/v1/functions'),
  ]);
  performance.mark('topology-fetched');

  const nodes = new Map();
  const node = (id, kind, name, href, ...extra) => {
    const live = h('div', { class: 'live' });
    const el = h(href ? 'a' : 'div', { class: `node ${kind}`, href, 'data-node': id },
      h('div', { class: 'name' }, h('span', { class: 'kind' }, kind === 'sub' ? 'subscription' : kind), name), ...extra, live);
    nodes.set(id, { el, live });
    return el;
  };
  const endpoints = [];
  const seen = new Set();
  const addEndpoint = (kind, name, href) => {
    const id = `${kind}:${name}`;
    if (!seen.has(id)) { seen.add(id); endpoints.push(node(id, kind, name, href)); }
    return id;
  };
  queues.forEach((q) => addEndpoint('queue', q, `#/queue/${enc(q)}`));
  streams.forEach((s) => addEndpoint('stream', s, `#/stream/${enc(s)}`));
  functions.forEach((f) => addEndpoint('function', f, `#/function/${enc(f)}`));

  const edges = [];
  const subNodes = subscriptions.map((s) => {
    const id = `sub:${s.topic}/${s.name}`;
    const target = endpointOf(s);
    edges.push([`topic:${s.topic}`, id], [id, addEndpoint(target.kind, target.name, target.href)]);
    const policy = s.filter_policy ? h('code', {}, JSON.stringify(s.filter_policy)) : null;
    return node(id, 'sub', `${s.topic} / ${s.name}`, `#/topic/${enc(s.topic)}`, policy);
  });
  const topicNodes = topics.map((t) => node(`topic:${t}`, 'topic', t, `#/topic/${enc(t)}`));

  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  const graph = h('div', { class: 'graph', 'data-testid': 'topology' }, svg,
    h('div', { class: 'column' }, h('h2', {}, `Topics (${topics.length})`), topicNodes),
    h('div', { class: 'column' }, h('h2', {}, `Subscriptions (${subscriptions.length})`), subNodes),
    h('div', { class: 'column' }, h('h2', {}, `Queues, streams, webhooks, functions (${endpoints.length})`), endpoints));
  main.replaceChildren(h('h1', {}, 'Topology'), graph);

  const draw = () => {
    const box = graph.getBoundingClientRect();
    svg.replaceChildren(...edges.flatMap(([from, to]) => {
      const a = nodes.get(from)?.el.getBoundingClientRect();
      const b = nodes.get(to)?.el.getBoundingClientRect();
      if (!a || !b) return [];
      const [x1, y1, x2, y2] = [a.right - box.left, a.top + a.height / 2 - box.top, b.left - box.left, b.top + b.height / 2 - box.top];
      const p = document.createElementNS('http://www.w3.org/2000/svg', 'path');
      p.setAttribute('d', `M${x1},${y1} C${x1 + 45},${y1} ${x2 - 45},${y2} ${x2},${y2}`);
      return [p];
    }));
  };
  draw();
  // What the console's load benchmark (benches/console.py) reads.
  performance.mark('topology-drawn');
  window.addEventListener('resize', draw);

  const rates = new Rates();
  const stop = every(2000, async () => {
    await rates.read();
    for (const t of topics) {
      nodes.get(`topic:${t}`).live.textContent =
        `${fmt(rates.perSecond('switchyard_topic_published_total', { topic: t }), '/s')} published · ${fmt(rates.value('switchyard_topic_published_total', { topic: t }))} total`;
    }
    for (const s of subscriptions) {
      const labels = { topic: s.topic, subscription: s.name };
      const n = nodes.get(`sub:${s.topic}/${s.name}`);
      const failed = rates.perSecond('switchyard_subscription_failed_total', labels);
      n.live.textContent = `${fmt(rates.perSecond('switchyard_subscription_delivered_total', labels), '/s')} delivered · ${fmt(rates.value('switchyard_subscription_failed_total', labels))} failed`;
      n.el.classList.toggle('failing', failed > 0);
    }
    for (const q of queues) {
      const depth = (state) => rates.value('switchyard_queue_messages', { queue: q, state });
      nodes.get(`queue:${q}`).live.textContent =
        `${fmt(depth('visible'))} visible · ${fmt(depth('in_flight'))} in flight · oldest ${fmt(rates.value('switchyard_queue_oldest_message_age_seconds', { queue: q }), ' s')}`;
    }
    for (const s of streams) {
      nodes.get(`stream:${s}`).live.textContent = `${fmt(rates.perSecond('switchyard_stream_records_put_total', { stream: s }), '/s')} put`;
    }
    for (const f of functions) {
      const labels = { function: f };
      nodes.get(`function:${f}`).live.textContent =
        `${fmt(rates.perSecond('switchyard_function_invocations_total', labels), '/s')} invoked · ${fmt(rates.value('switchyard_function_concurrency', labels))} running`;
    }
  });
  return () => { stop(); window.removeEventListener('resize', draw); };
}

// ---- Topic: live tail and publish -----------------------------------------------------

async function topicPage(main, name) {
  const [topic, { subscriptions }] = await Promise.all([
    api('GET', `/v1/topics/${enc(name)}`), api('GET', `/v1/topics/${enc(name)}/subscriptions`),
  ]);
  const events = h('div', { class: 'tail', 'data-testid': 'tail' });
  const dropped = h('span', { class: 'dropped' });
  const counter = h('span', {}, 'waiting for events');
  const message = h('textarea', { 'aria-label': 'message' }, '{"order_id": "o-1"}');
  const attributes = h('textarea', { 'aria-label': 'attributes', placeholder: '{"event": "order_placed"}' });
  const result = h('div', { class: 'result', 'data-testid': 'publish-result' });
  const publish = async (e) => {
    e.preventDefault();
    try {
      const body = { message: parseJson(message.value, 'the message') };
      const attrs = parseJson(attributes.value, 'the attributes');
      if (attrs) body.attributes = attrs;
      const r = await api('POST', `/v1/topics/${enc(name)}/publish`, body);
      result.className = 'result ok';
      result.textContent = `Published ${r.message_id}`;
    } catch (err) {
      result.className = 'result bad';
      result.textContent = err.message;
    }
  };
  main.replaceChildren(
    h('h1', {}, h('span', { class: 'kind' }, 'topic'), name),
    h('div', { class: 'panels' },
      h('section', { class: 'panel' }, h('h2', {}, 'Subscriptions'),
        h('table', {}, h('tr', {}, h('th', {}, 'name'), h('th', {}, 'endpoint'), h('th', {}, 'filter policy')),
          subscriptions.map((s) => {
            const e = endpointOf(s);
            return h('tr', {}, h('td', {}, s.name),
              h('td', {}, e.href ? h('a', { href: e.href }, `${e.kind} ${e.name}`) : `${e.kind} ${e.name}`),
              h('td', {}, s.filter_policy ? h('code', {}, JSON.stringify(s.filter_policy)) : 'every message'));
          })),
        topic.schema ? [h('h2', {}, 'Schema'), h('pre', {}, json(topic.schema))] : null),
      h('section', { class: 'panel' }, h('h2', {}, 'Publish'),
        h('form', { onsubmit: publish },
          h('label', {}, 'Message (JSON)'), message,
          h('label', {}, 'Attributes (JSON, optional)'), attributes,
          h('button', {}, 'Publish')), result)),
    h('section', { class: 'panel' }, h('h2', {}, 'Live tail ', counter, ' ', dropped), events));

  const abort = new AbortController();
  let seen = 0;
  let lost = 0;
  const show = (kind, data) => {
    if (kind === 'dropped') {
      lost += JSON.parse(data).dropped;
      dropped.textContent = `${lost} dropped while the page fell behind`;
      return;
    }
    const e = JSON.parse(data);
    seen += 1;
    counter.textContent = seen === 1 ? '1 event' : `${seen} events`;
    events.prepend(h('div', { class: 'event' },
      h('div', { class: 'meta' }, `${e.published_at} · ${e.message_id} · delivered to ${e.subscriptions.length ? e.subscriptions.join(', ') : 'no subscription'}`),
      h('pre', {}, JSON.stringify(e.message)),
      Object.keys(e.attributes).length ? h('div', { class: 'meta' }, `attributes ${JSON.stringify(e.attributes)}`) : null));
    // Keep the page light under a fast topic: the newest 200 stay.
    while (events.childElementCount > 200) events.lastElementChild.remove();
  };
  (async () => {
    const res = await request(`/v1/topics/${enc(name)}/tail`, { signal: abort.signal });
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let pending = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      pending += value;
      let end;
      while ((end = pending.indexOf('\n\n')) >= 0) {
        const block = pending.slice(0, end);
        pending = pending.slice(end + 2);
        let kind = 'message';
        let data = '';
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) kind = line.slice(6).trim();
          else if (line.startsWith('data:')) data += line.slice(5).trim();
        }
        if (data) show(kind, data);
      }
    }
  })().catch((e) => { if (e.name !== 'AbortError') $('#status').textContent = `tail: ${e.message}`; });
  return () => abort.abort();
}

// ---- Queue ----------------------------------------------------------------------------

async function queuePage(main, name) {
  const counts = h('tbody', {});
  const received = h('div', { 'data-testid': 'received' });
  const body = h('textarea', { 'aria-label': 'message' }, '{"hello": "world"}');
  const visibility = h('input', { type: 'number', min: 0, max: 43200, value: 0, 'aria-label': 'visibility timeout' });
  const result = h('div', { class: 'result' });
  const note = (ok, text) => { result.className = `result ${ok ? 'ok' : 'bad'}`; result.textContent = text; };
  const send = async (e) => {
    e.preventDefault();
    try {
      const r = await api('POST', `/v1/queues/${enc(name)}/messages`, { message: parseJson(body.value, 'the message') });
      note(true, `Sent ${r.message_id}`);
    } catch (err) { note(false, err.message); }
  };
  const receive = async () => {
    try {
      const r = await api('POST', `/v1/queues/${enc(name)}/receive`,
        { max_messages: 10, visibility_timeout_s: Number(visibility.value) });
      received.replaceChildren(...r.messages.map((m) => h('div', { class: 'event' },
        h('div', { class: 'meta' }, `${m.message_id} · received ${m.receive_count} times `,
          h('button', { class: 'quiet', onclick: async (ev) => {
            try { await api('POST', `/v1/queues/${enc(name)}/ack`, { receipts: [m.receipt] }); ev.target.closest('.event').remove(); } catch (err) { note(false, err.message); }
          } }, 'Delete')),
        h('pre', {}, JSON.stringify(m.message)))));
      note(true, `${r.messages.length} received`);
    } catch (err) { note(false, err.message); }
  };
  const redrive = async () => {
    try { const r = await api('POST', `/v1/queues/${enc(name)}/redrive`); note(true, `${r.moved} moved back`); } catch (err) { note(false, err.message); }
  };
  main.replaceChildren(
    h('h1', {}, h('span', { class: 'kind' }, 'queue'), name),
    h('div', { class: 'panels' },
      h('section', { class: 'panel' }, h('h2', {}, 'Messages'), h('table', { 'data-testid': 'counts' }, counts),
        h('p', {}, h('button', { class: 'quiet', onclick: redrive }, 'Redrive dead letters back'))),
      h('section', { class: 'panel' }, h('h2', {}, 'Send'),
        h('form', { onsubmit: send }, h('label', {}, 'Message (JSON)'), body, h('button', {}, 'Send')), result),
      h('section', { class: 'panel' }, h('h2', {}, 'Receive'),
        h('label', {}, 'Visibility timeout (s; 0 peeks: the messages stay visible)'), visibility,
        h('button', { onclick: receive }, 'Receive up to 10'), received)));
  const rates = new Rates();
  return every(2000, async () => {
    const [info] = await Promise.all([api('GET', `/v1/queues/${enc(name)}`), rates.read()]);
    const row = (label, v) => h('tr', {}, h('td', {}, label), h('td', { class: 'num' }, v));
    counts.replaceChildren(
      row('visible', info.approximate_visible), row('in flight', info.approximate_in_flight),
      row('delayed', info.approximate_delayed),
      row('age of the oldest', fmt(rates.value('switchyard_queue_oldest_message_age_seconds', { queue: name }), ' s')),
      row('sent', fmt(rates.perSecond('switchyard_queue_sent_total', { queue: name }), '/s')),
      row('received', fmt(rates.perSecond('switchyard_queue_received_total', { queue: name }), '/s')),
      row('moved to the dead-letter queue', fmt(rates.value('switchyard_queue_dead_lettered_total', { queue: name }))),
      info.redrive_policy ? row('dead-letter queue', h('a', { href: `#/queue/${enc(info.redrive_policy.dead_letter_queue)}` }, info.redrive_policy.dead_letter_queue)) : null);
  });
}

// ---- Stream ---------------------------------------------------------------------------

async function streamPage(main, name) {
  const body = h('div', {});
  main.replaceChildren(h('h1', {}, h('span', { class: 'kind' }, 'stream'), name), body);
  const rates = new Rates();
  return every(2000, async () => {
    const [info, { shards }] = await Promise.all([
      api('GET', `/v1/streams/${enc(name)}`), api('GET', `/v1/streams/${enc(name)}/shards`), rates.read(),
    ]);
    const groups = await Promise.all(info.groups.map((g) => api('GET', `/v1/streams/${enc(name)}/groups/${enc(g)}`)));
    body.replaceChildren(h('div', { class: 'panels' },
      h('section', { class: 'panel' }, h('h2', {}, `Shards · ${fmt(rates.perSecond('switchyard_stream_records_put_total', { stream: name }), ' records/s')}`),
        h('table', {}, h('tr', {}, h('th', {}, 'shard'), h('th', {}, 'first'), h('th', {}, 'last')),
          shards.map((s) => h('tr', {}, h('td', {}, s.shard_id), h('td', { class: 'num' }, s.sequence_range.first), h('td', { class: 'num' }, s.sequence_range.last ?? '–'))))),
      groups.map((g) => h('section', { class: 'panel' }, h('h2', {}, h('span', { class: 'kind' }, 'group'), g.name),
        h('table', {}, h('tr', {}, h('th', {}, 'shard'), h('th', {}, 'member'), h('th', {}, 'checkpoint'), h('th', {}, 'lag')),
          g.shards.map((s) => h('tr', {}, h('td', {}, s.shard_id), h('td', {}, s.member ?? 'none'), h('td', { class: 'num' }, s.checkpoint ?? '–'),
            h('td', { class: 'num' }, fmt(rates.value('switchyard_stream_group_lag_records', { group: g.name, shard: s.shard_id, stream: name }))))))))));
  });
}

// ---- Function -------------------------------------------------------------------------

async function functionPage(main, name) {
  const facts = h('tbody', {});
  const message = h('textarea', { 'aria-label': 'event' }, '{"order_id": "o-1", "total": 42}');
  const attributes = h('textarea', { 'aria-label': 'attributes', placeholder: '{"event": "order_placed"}' });
  const outcome = h('div', { 'data-testid': 'invocation' });
  const recent = h('div', { class: 'tail', 'data-testid': 'recent-logs' });
  const invoke = async (e) => {
    e.preventDefault();
    try {
      const body = { message: parseJson(message.value, 'the event') };
      const attrs = parseJson(attributes.value, 'the attributes');
      if (attrs) body.attributes = attrs;
      const r = await api('POST', `/v1/functions/${enc(name)}/invoke`, body);
      outcome.replaceChildren(
        h('div', { class: `result ${r.ok ? 'ok' : 'bad'}` }, r.ok ? `Succeeded in ${r.duration_ms.toFixed(2)} ms` : `Failed: ${r.error.message}`),
        h('h2', {}, 'Logs'), h('pre', { 'data-testid': 'logs' }, r.logs.map((l) => `${l.level} ${l.message}`).join('\n') || '(none)'),
        h('h2', {}, 'Published'), h('pre', {}, r.published.length ? json(r.published) : '(nothing)'));
    } catch (err) {
      outcome.replaceChildren(h('div', { class: 'result bad' }, err.message));
    }
  };
  main.replaceChildren(
    h('h1', {}, h('span', { class: 'kind' }, 'function'), name),
    h('div', { class: 'panels' },
      h('section', { class: 'panel' }, h('h2', {}, 'Invocations'), h('table', {}, facts)),
      h('section', { class: 'panel' }, h('h2', {}, 'Invoke once'),
        h('p', { class: 'meta' }, 'Runs the handler with this event; what it publishes is shown, not routed.'),
        h('form', { onsubmit: invoke }, h('label', {}, 'Event message (JSON)'), message,
          h('label', {}, 'Attributes (JSON, optional)'), attributes, h('button', {}, 'Invoke')), outcome)),
    h('section', { class: 'panel' }, h('h2', {}, 'Recent logs'), recent));
  const rates = new Rates();
  return every(2000, async () => {
    const [f, { logs }] = await Promise.all([
      api('GET', `/v1/functions/${enc(name)}`), api('GET', `/v1/functions/${enc(name)}/logs`), rates.read(),
    ]);
    recent.replaceChildren(...logs.slice(-100).reverse().map((l) => h('div', { class: 'event' },
      h('div', { class: 'meta' }, `${l.at} · ${l.level} · ${l.source}${l.message_id ? ` · event ${l.message_id}` : ''}`),
      h('pre', {}, l.message))));
    if (!logs.length) recent.replaceChildren(h('p', { class: 'meta' }, 'Nothing logged yet.'));
    const labels = { function: name };
    const count = rates.value('switchyard_function_duration_seconds_count', labels);
    const sum = rates.value('switchyard_function_duration_seconds_sum', labels);
    const errors = [...(rates.now?.values.entries() ?? [])]
      .filter(([k]) => k.startsWith(`switchyard_function_errors_total{function="${name}",`))
      .map(([k, v]) => `${k.match(/kind="([^"]*)"/)[1]} ${v}`).join(', ');
    const row = (label, v) => h('tr', {}, h('td', {}, label), h('td', { class: 'num' }, v));
    facts.replaceChildren(
      row('state', f.state + (f.error ? `: ${f.error}` : '')),
      row('invocations', fmt(rates.value('switchyard_function_invocations_total', labels))),
      row('rate', fmt(rates.perSecond('switchyard_function_invocations_total', labels), '/s')),
      row('errors', errors || 'none'),
      row('mean duration', count ? `${((sum / count) * 1000).toFixed(2)} ms` : '–'),
      row('running now', fmt(rates.value('switchyard_function_concurrency', labels))),
      row('throttled', fmt(rates.value('switchyard_function_throttles_total', labels))),
      (f.source_status || []).map((s) => row(`source ${s.queue ?? `${s.stream}/${s.group}`}`, `${s.concurrency} running`)));
  });
}

// ---- Filter policies ------------------------------------------------------------------

function policiesPage(main) {
  const policy = h('textarea', { 'aria-label': 'policy' }, '{"event": ["order_placed"], "total": [{"numeric": [">", 100]}]}');
  const scope = h('select', { 'aria-label': 'scope' }, h('option', {}, 'MessageAttributes'), h('option', {}, 'MessageBody'));
  const message = h('textarea', { 'aria-label': 'message' }, '{"total": 250}');
  const attributes = h('textarea', { 'aria-label': 'attributes' }, '{"event": {"Type": "String", "Value": "order_placed"}, "total": {"Type": "Number", "Value": "250"}}');
  const result = h('div', { class: 'result', 'data-testid': 'policy-result' });
  const test = async (e) => {
    e.preventDefault();
    try {
      const r = await api('POST', '/v1/policies/test', {
        policy: parseJson(policy.value, 'the policy'), scope: scope.value,
        message: parseJson(message.value, 'the message'), attributes: parseJson(attributes.value, 'the attributes'),
      });
      result.className = `result ${r.match ? 'ok' : 'bad'}`;
      result.textContent = r.match ? 'Matches' : 'Does not match';
    } catch (err) {
      result.className = 'result bad';
      result.textContent = err.message;
    }
  };
  main.replaceChildren(h('h1', {}, 'Try a filter policy'),
    h('form', { class: 'panel', onsubmit: test },
      h('label', {}, 'Policy'), policy, h('label', {}, 'Scope'), scope,
      h('label', {}, 'Message (JSON)'), message, h('label', {}, 'Attributes (SNS form)'), attributes,
      h('button', {}, 'Test'), result));
  return () => {};
}

// ---- Routing --------------------------------------------------------------------------

const pages = [
  [/^#\/topic\/(.+)$/, topicPage], [/^#\/queue\/(.+)$/, queuePage], [/^#\/stream\/(.+)$/, streamPage],
  [/^#\/function\/(.+)$/, functionPage], [/^#\/policies$/, policiesPage],
];

async function route() {
  leave();
  leave = () => {};
  const main = $('#main');
  const hash = location.hash || '#/';
  const [, page] = pages.find(([re]) => re.test(hash)) ?? [null, topology];
  const arg = hash.match(/^#\/[a-z]+\/(.+)$/)?.[1];
  try {
    leave = (await page(main, arg === undefined ? undefined : decodeURIComponent(arg))) || (() => {});
    $('#status').textContent = '';
  } catch (e) {
    main.replaceChildren(h('p', { class: 'result bad' }, e.message));
  }
}

window.addEventListener('hashchange', route);
route();
