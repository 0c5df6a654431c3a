// app.js: the MCP console, a single-page app over the gateway's public API.
//
// Routes live in the fragment (`#/services`, `#/service/echo`, `#/config`,
// `#/config/{ns}`, `#/config/{ns}/{key…}`, `#/gateway`). The registry's and
// the config store's watch streams (SSE) keep the page live: an event
// re-renders the view that shows it (an open editor keeps its text) and
// lands in the activity feed. Write controls appear only when the token's
// scopes allow the write; the gateway enforces them anyway.

import * as api from './api.js';
import { badge, clock, duration, fill, h, pretty, table } from './dom.js';
import { diffTable } from './diff.js';

const main = document.getElementById('main');
const feed = document.getElementById('feed');
const live = document.getElementById('live');
const who = document.getElementById('who');

/** The view on screen: its route, a generation (bumped on navigation) and what it keeps across live refreshes. */
const screen = { path: [], generation: 0, renders: 0, keep: new Map(), interested: () => false };

const enc = encodeURIComponent;
const isAdmin = () => String(api.claims().scope || '').split(/\s+/).includes('admin');

// ------------------------------------------------------------------ routing

function parseRoute() {
  const path = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  return path.length ? path : ['services'];
}

async function render({ navigated }) {
  const path = parseRoute();
  if (navigated) {
    screen.generation += 1;
    screen.keep = new Map();
  }
  const generation = screen.generation;
  screen.path = path;
  for (const link of document.querySelectorAll('nav a[data-section]')) {
    const section = link.dataset.section;
    const current = path[0] === section || (section === 'services' && path[0] === 'service');
    if (current) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (!api.token()) {
    showSignIn();
    return;
  }
  const views = { services: servicesView, service: serviceView, config: configView, gateway: gatewayView };
  const view = views[path[0]] || notFoundView;
  let content;
  try {
    content = await view(path.slice(1));
  } catch (e) {
    content = errorView(e);
  }
  if (generation !== screen.generation) return; // navigated away meanwhile
  fill(main, content);
  screen.renders += 1;
  main.dataset.view = path.join('/');
  main.dataset.renders = String(screen.renders);
  tickLeases();
  if (navigated) {
    const heading = main.querySelector('h1');
    // Move focus to the new page's heading (keyboard and screen-reader users), not on the first load.
    if (heading && document.documentElement.dataset.firstRender) heading.focus({ preventScroll: true });
    document.title = `${heading ? heading.textContent : 'MCP'} · MCP console`;
  }
  if (!document.documentElement.dataset.firstRender) {
    document.documentElement.dataset.firstRender = String(Math.round(performance.now()));
  }
}

let pending = null;
/** Re-render the current view soon (live events come in bursts). */
function refreshSoon() {
  clearTimeout(pending);
  pending = setTimeout(() => render({ navigated: false }), 120);
}

/** An element kept across live refreshes of one view (an editor keeps its text). */
function keep(id, build) {
  if (!screen.keep.has(id)) screen.keep.set(id, build());
  return screen.keep.get(id);
}

function errorView(e) {
  const message = e instanceof api.ApiError ? e.message : `The console hit an error: ${e.message}`;
  const parts = [h('h1', { tabindex: '-1' }, 'Cannot show this page'), h('p', { class: 'alert', role: 'alert' }, message)];
  if (e.status === 401) parts.push(signInForm());
  return parts;
}

function notFoundView() {
  return [h('h1', { tabindex: '-1' }, 'No such page'), h('p', {}, h('a', { href: '#/services' }, 'Go to the services'))];
}

// ------------------------------------------------------------------ sign-in

function signInForm() {
  const input = h('textarea', { id: 'token', name: 'token', rows: '3', autocomplete: 'off', spellcheck: 'false', required: true, 'aria-describedby': 'token-help' });
  return h('form', {
    class: 'card signin',
    onsubmit: (event) => {
      event.preventDefault();
      if (!input.value.trim()) return;
      api.signIn(input.value);
      input.value = '';
      start();
    },
  },
  h('label', { for: 'token' }, 'Bearer token (JWT)'),
  input,
  h('p', { id: 'token-help', class: 'muted' }, 'Kept in this tab only (sessionStorage) and sent as an Authorization header to this gateway, never in a URL. ',
    h('code', {}, 'mcpctl up'), ' prints a link that signs you in.'),
  h('button', { type: 'submit', class: 'primary' }, 'Sign in'));
}

function showSignIn() {
  fill(who);
  fill(main, h('h1', { tabindex: '-1' }, 'Sign in'), signInForm());
  main.dataset.view = 'signin';
  setLive('offline');
}

function showIdentity() {
  const c = api.claims();
  const scopes = String(c.scope || '').split(/\s+/).filter(Boolean);
  fill(who,
    h('span', { class: 'sub', title: `scopes: ${scopes.join(' ') || 'none'}` }, c.sub || 'signed in'),
    ' ',
    h('span', { class: 'scopes muted' }, scopes.join(' ') || 'no scope'),
    ' ',
    h('button', {
      type: 'button',
      class: 'link',
      onclick: () => {
        api.signOut();
        stopLive();
        showSignIn();
      },
    }, 'Sign out'));
}

// ------------------------------------------------------------------ live

let stops = [];
const streams = new Map();

function setLive(text) {
  live.textContent = text;
  live.dataset.state = text;
}

function streamState(name, state, detail) {
  streams.set(name, { state, detail });
  const states = [...streams.values()].map((s) => s.state);
  setLive(states.every((s) => s === 'live') ? 'live' : states.some((s) => s === 'live') ? 'partly live' : states.some((s) => s === 'retrying') ? 'reconnecting' : 'offline');
  if (state === 'refused') note(`${name} stream: ${detail}`);
}

function stopLive() {
  stops.forEach((stop) => stop());
  stops = [];
  streams.clear();
}

function note(text, kind = 'note') {
  feed.prepend(h('li', { class: `ev ev-${kind}` }, h('time', {}, clock()), ' ', text));
  while (feed.children.length > 50) feed.lastChild.remove();
}

function startLive() {
  stopLive();
  if (api.can('registry', 'read')) {
    stops.push(api.follow('/api/v1/registry/watch', onRegistryEvent, (s, d) => streamState('registry', s, d)));
  }
  if (api.can('config', 'read')) {
    stops.push(api.follow('/api/v1/config/watch', onConfigEvent, (s, d) => streamState('config', s, d)));
  }
  if (!stops.length) setLive('offline');
}

function onRegistryEvent({ event, data }) {
  if (event === 'reset') {
    note('registry history was reset: reloading', 'reset');
    refreshSoon();
    return;
  }
  const status = data.instance && data.instance.status;
  note([h('b', {}, event), ' ', h('a', { href: `#/service/${enc(data.service)}` }, data.service), `/${data.id || ''}`, status && event !== 'deregistered' && event !== 'expired' ? [' → ', badge(status)] : null], event);
  const [view, name] = screen.path;
  if (view === 'services' || (view === 'service' && name === data.service) || view === 'gateway') refreshSoon();
}

function onConfigEvent({ event, data }) {
  if (event === 'reset') {
    note('config history was reset: reloading', 'reset');
    refreshSoon();
    return;
  }
  const ns = data.namespace || '';
  const key = data.key || '';
  note([h('b', {}, event), ' ', h('a', { href: `#/config/${enc(ns)}/${key.split('/').map(enc).join('/')}` }, `${ns}/${key}`), data.version ? ` v${data.version}` : ''], event);
  const [view, shown] = screen.path;
  if (view === 'config' && (shown === undefined || shown === ns)) refreshSoon();
}

// ------------------------------------------------------------------ services

async function servicesView() {
  const [list, summary] = await Promise.all([
    api.get('/api/v1/registry/services'),
    api.can('health', 'read') ? api.get('/api/v1/health/summary').catch(() => null) : null,
  ]);
  const health = new Map(((summary && summary.services) || []).map((s) => [s.name, s]));
  const services = list.services || [];
  const rows = services.map((s) => {
    const hs = health.get(s.name);
    const warning = hs ? hs.warning : null;
    const critical = hs ? hs.critical : null;
    const other = hs ? Math.max(0, s.instances - s.passing - warning - critical) : null;
    return h('tr', { dataset: { service: s.name } },
      h('th', { scope: 'row' }, h('a', { href: `#/service/${enc(s.name)}` }, s.name), s.protected ? [' ', h('span', { class: 'flag', title: 'mass-expiry protection holds back its expiries' }, '⚑ protected')] : null),
      h('td', { class: 'num' }, String(s.instances)),
      h('td', { class: 'num' }, count(s.passing, 'passing')),
      h('td', { class: 'num' }, count(warning, 'warning')),
      h('td', { class: 'num' }, count(critical, 'critical')),
      h('td', { class: 'num' }, count(other, 'unknown')),
      h('td', {}, hs ? badge(hs.status) : h('span', { class: 'muted' }, '—')));
  });
  return [
    h('h1', { tabindex: '-1' }, 'Services'),
    h('p', { class: 'muted' }, `${services.length} service${services.length === 1 ? '' : 's'} at registry revision ${list.revision}.`),
    table(null, ['Service', 'Instances', 'Passing', 'Warning', 'Critical', 'Unknown', 'Health'], rows, { class: 'services', empty: 'No service is registered (or your token may read none).' }),
  ];
}

function count(n, status) {
  if (n === null || n === undefined) return h('span', { class: 'muted' }, '—');
  return n ? badge(status, String(n)) : h('span', { class: 'muted' }, '0');
}

async function serviceView([name]) {
  const base = `/api/v1/registry/services/${enc(name)}/instances`;
  const readsHealth = api.can('health', 'read', name);
  const [all, healthy, health, upstreams] = await Promise.all([
    api.get(base),
    api.get(`${base}?healthy=true`),
    readsHealth ? api.get(`/api/v1/health/services/${enc(name)}`).catch(() => null) : null,
    isAdmin() ? api.get('/admin/upstreams').catch(() => null) : null,
  ]);
  const healthyIds = new Set(healthy.instances.map((i) => i.id));
  const checks = new Map(((health && health.instances) || []).map((i) => [i.id, i]));
  const circuits = new Map();
  for (const u of (upstreams && upstreams.upstreams) || []) {
    if (u.kind === 'service' && u.name === name) for (const i of u.instances) circuits.set(i.id, i);
  }
  const explains = new Map(await Promise.all(all.instances
    .filter((i) => !healthyIds.has(i.id) && readsHealth)
    .map(async (i) => [i.id, await api.get(`/api/v1/health/services/${enc(name)}/instances/${enc(i.id)}`).catch((e) => ({ error: e.message }))])));
  const writes = api.can('registry', 'write', name);
  const cards = all.instances.map((i) => instanceCard(name, i, healthyIds.has(i.id), checks.get(i.id), circuits.get(i.id), explains.get(i.id), writes));
  const byStatus = {};
  for (const i of all.instances) byStatus[i.status] = (byStatus[i.status] || 0) + 1;
  return [
    h('p', { class: 'crumbs' }, h('a', { href: '#/services' }, 'Services'), ' / '),
    h('h1', { tabindex: '-1' }, name),
    h('p', { class: 'counts' }, Object.entries(byStatus).map(([s, n]) => [badge(s, `${n} ${s}`), ' ']),
      healthyIds.size === all.instances.length ? null : h('span', { class: 'muted' }, `${healthyIds.size} of ${all.instances.length} returned by healthy=true`)),
    upstreams ? null : h('p', { class: 'muted' }, 'Circuit states need the admin scope.'),
    all.instances.length ? h('div', { class: 'cards' }, cards) : h('p', { class: 'muted' }, 'No instance is registered.'),
  ];
}

function instanceCard(service, i, healthy, check, circuit, why, writes) {
  const kv = (label, value) => [h('dt', {}, label), h('dd', {}, value)];
  const tags = i.tags && i.tags.length ? i.tags.map((t) => [h('span', { class: 'tag' }, t), ' ']) : h('span', { class: 'muted' }, 'none');
  const meta = Object.entries(i.metadata || {});
  return h('article', { class: `card instance st-${i.status}`, dataset: { instance: i.id, status: i.status }, 'aria-labelledby': `inst-${i.id}` },
    h('h2', { id: `inst-${i.id}` }, i.id, ' ', badge(i.status)),
    h('dl', {},
      kv('Address', h('code', {}, `${i.host}:${i.port}`)),
      kv('Tags', tags),
      kv('Metadata', meta.length ? meta.map(([k, v]) => [h('code', {}, `${k}=${v}`), ' ']) : h('span', { class: 'muted' }, 'none')),
      kv('Lease left', i.expires_at ? h('span', { class: 'lease', dataset: { expires: i.expires_at } }, '…') : '—'),
      kv('Check', i.check ? `${i.check.type}${i.check.path ? ` ${i.check.path}` : ''} every ${i.check.interval_seconds || '?'} s` : 'none (the lease decides)'),
      kv('Last output', check && check.output ? h('code', { class: 'output' }, check.output) : h('span', { class: 'muted' }, check ? 'not checked yet' : '—')),
      kv('Circuit', circuit ? [badge(circuit.circuit), circuit.consecutive_failures ? ` ${circuit.consecutive_failures} failures` : ''] : h('span', { class: 'muted' }, '—'))),
    healthy ? null : explainBlock(why),
    writes ? confirmButton(`Deregister ${i.id}`, `Remove ${i.id} from ${service} now?`, async () => {
      const r = await api.request('DELETE', `/api/v1/registry/services/${enc(service)}/instances/${enc(i.id)}`);
      if (!r.ok) throw new api.ApiError(r.status, r.body);
      return `${i.id} deregistered.`;
    }, 'danger') : null);
}

function explainBlock(why) {
  if (!why) return h('p', { class: 'why muted' }, 'Not returned by healthy=true (the explanation needs the health:read scope).');
  if (why.error) return h('p', { class: 'why alert' }, why.error);
  const reasons = why.reasons && why.reasons.length ? why.reasons : ['no reason given'];
  return h('div', { class: 'why', role: 'note' },
    h('p', {}, h('b', {}, 'Why healthy=true leaves it out:')),
    h('ul', {}, reasons.map((r) => h('li', {}, r))),
    why.last_check && why.last_check.critical_since ? h('p', { class: 'muted' }, `Critical since ${clock(why.last_check.critical_since)}.`) : null);
}

/** A button that asks for confirmation in place (no modal dialog), then runs `action`. */
function confirmButton(label, question, action, kind = '') {
  const box = h('div', { class: 'confirm' });
  const status = h('p', { class: 'status', role: 'status' });
  const ask = () => {
    const yes = h('button', { type: 'button', class: `${kind} yes`, onclick: run }, 'Yes, do it');
    fill(box, h('span', {}, question, ' '), yes, ' ', h('button', { type: 'button', class: 'no', onclick: reset }, 'Cancel'), status);
    yes.focus();
  };
  const reset = () => fill(box, h('button', { type: 'button', class: kind, onclick: ask }, label), status);
  async function run() {
    for (const b of box.querySelectorAll('button')) b.disabled = true;
    try {
      const done = await action();
      reset();
      status.textContent = done || 'Done.';
      status.className = 'status ok';
    } catch (e) {
      reset();
      status.textContent = e.message;
      status.className = 'status alert';
    }
  }
  reset();
  return box;
}

function tickLeases() {
  const now = Date.now();
  for (const el of document.querySelectorAll('[data-expires]')) {
    const left = Date.parse(el.dataset.expires) - now;
    el.textContent = duration(left);
    el.classList.toggle('low', left < 10000);
  }
}

// ------------------------------------------------------------------ config

async function configView(path) {
  if (path.length === 0) return namespacesView();
  if (path.length === 1) return namespaceView(path[0]);
  return keyView(path[0], path.slice(1).join('/'));
}

async function namespacesView() {
  const list = await api.get('/api/v1/config/namespaces');
  const names = list.namespaces || [];
  return [
    h('h1', { tabindex: '-1' }, 'Config'),
    names.length
      ? h('ul', { class: 'list namespaces' }, names.map((ns) => h('li', {}, h('a', { href: `#/config/${enc(ns)}` }, ns))))
      : h('p', { class: 'muted' }, 'No namespace (or your token may read none).'),
  ];
}

const keyHref = (ns, key) => `#/config/${enc(ns)}/${key.split('/').map(enc).join('/')}`;
const keyPath = (ns, key) => `/api/v1/config/namespaces/${enc(ns)}/keys/${api.seg(key)}`;

async function schemaOf(ns) {
  const r = await api.request('GET', `/api/v1/config/namespaces/${enc(ns)}/schema`);
  if (r.status === 404) return null;
  if (!r.ok) return { error: api.explain(r.status, r.body) };
  return r.body;
}

async function propagation(ns) {
  const r = await api.request('GET', `/api/v1/config/namespaces/${enc(ns)}/clients`);
  if (!r.ok) return h('p', { class: 'alert' }, api.explain(r.status, r.body));
  const clients = r.body.clients || [];
  return table(`Propagation (namespace revision ${r.body.revision})`, ['Client', 'Watches', 'Revision', 'Delivered', 'State'],
    clients.map((c) => [c.client_id, c.scope, String(c.revision), clock(c.delivered_at), badge(c.status)]),
    { class: 'clients', empty: 'No client watches this namespace.' });
}

async function namespaceView(ns) {
  const [keys, schema, clients] = await Promise.all([
    api.get(`/api/v1/config/namespaces/${enc(ns)}/keys`),
    schemaOf(ns),
    propagation(ns),
  ]);
  const entries = keys.entries || [];
  const rows = entries.map((e) => [
    h('a', { href: keyHref(ns, e.key) }, e.key),
    String(e.version),
    h('code', { class: 'preview' }, preview(e.value)),
    clock(e.updated_at),
    e.updated_by || '',
  ]);
  return [
    h('p', { class: 'crumbs' }, h('a', { href: '#/config' }, 'Config'), ' / '),
    h('h1', { tabindex: '-1' }, ns),
    table(`Keys (revision ${keys.revision})`, ['Key', 'Version', 'Value', 'Updated', 'By'], rows, { class: 'keys', empty: 'No key.' }),
    api.can('config', 'write', ns) ? newKeyForm(ns) : null,
    h('h2', {}, 'Schema'),
    schemaBlock(schema),
    h('h2', {}, 'Clients'),
    clients,
  ];
}

function schemaBlock(schema) {
  if (!schema) return h('p', { class: 'muted' }, 'No schema: any JSON value is accepted.');
  if (schema.error) return h('p', { class: 'alert' }, schema.error);
  return h('details', {}, h('summary', {}, 'JSON Schema every value must meet'), h('pre', { class: 'json' }, pretty(schema.schema || schema)));
}

function preview(value) {
  const text = JSON.stringify(value);
  return text.length > 80 ? `${text.slice(0, 77)}…` : text;
}

function newKeyForm(ns) {
  const input = h('input', { id: 'new-key', name: 'key', required: true, pattern: '[A-Za-z0-9._/\\-]{1,128}', autocomplete: 'off' });
  return h('form', {
    class: 'inline',
    onsubmit: (event) => {
      event.preventDefault();
      location.hash = keyHref(ns, input.value.trim());
    },
  }, h('label', { for: 'new-key' }, 'New key '), input, ' ', h('button', { type: 'submit' }, 'Open editor'));
}

async function keyView(ns, key) {
  const [current, history, schema, clients] = await Promise.all([
    api.request('GET', keyPath(ns, key)),
    api.request('GET', `${keyPath(ns, key)}/history`),
    schemaOf(ns),
    propagation(ns),
  ]);
  if (!current.ok && current.status !== 404) throw new api.ApiError(current.status, current.body);
  const entry = current.ok ? current.body : null;
  const versions = history.ok ? history.body.versions || [] : [];
  const writes = api.can('config', 'write', ns);
  const editor = writes ? keep(`editor:${ns}/${key}`, () => makeEditor(ns, key, entry)) : null;
  if (editor) editor.sync(entry);
  return [
    h('p', { class: 'crumbs' }, h('a', { href: '#/config' }, 'Config'), ' / ', h('a', { href: `#/config/${enc(ns)}` }, ns), ' / '),
    h('h1', { tabindex: '-1' }, key),
    h('div', { class: 'key-grid' }, h('section', { class: 'current', 'aria-labelledby': 'current-title' },
      h('h2', { id: 'current-title' }, entry ? `Current value · version ${entry.version}` : 'No current value'),
      entry
        ? [h('p', { class: 'muted' }, `Written ${clock(entry.updated_at)} by ${entry.updated_by || 'unknown'}${entry.message ? ` — “${entry.message}”` : ''}.`),
          h('pre', { class: 'json', id: 'value' }, pretty(entry.value))]
        : h('p', { class: 'muted' }, versions.length ? 'The key was deleted; its history remains.' : 'The key does not exist yet.')),
    editor ? editor.element : null),
    h('section', { 'aria-labelledby': 'history-title' }, h('h2', { id: 'history-title' }, 'History'), historyBlock(ns, key, versions, entry, writes)),
    h('h2', {}, 'Schema'),
    schemaBlock(schema),
    h('h2', {}, 'Clients'),
    clients,
  ];
}

function makeEditor(ns, key, entry) {
  // The version the editor is based on, and its text as loaded (an editor
  // still showing it has no change of its own and may follow the key).
  const base = { version: entry ? entry.version : null, text: entry ? pretty(entry.value) : '' };
  const text = h('textarea', { id: 'editor', rows: '10', spellcheck: 'false', 'aria-describedby': 'editor-status' });
  text.value = base.text;
  const message = h('input', { id: 'message', name: 'message', autocomplete: 'off', placeholder: 'why (optional)' });
  const status = h('div', { id: 'editor-status', class: 'status', role: 'status', 'aria-live': 'polite' });
  const stale = h('div', { class: 'stale', role: 'status' });
  const check = h('button', { type: 'button', id: 'dry-run' }, 'Check (dry run)');
  const save = h('button', { type: 'button', id: 'save', class: 'primary', disabled: true }, 'Save');
  let checked = null; // the text that passed the dry run

  const preconditions = () => (base.version ? { 'If-Match': `"${base.version}"` } : { 'If-None-Match': '*' });
  const say = (cls, ...parts) => {
    status.className = `status ${cls}`;
    fill(status, ...parts);
    status.scrollIntoView({ block: 'nearest' });
  };
  const parse = () => {
    try {
      return { value: JSON.parse(text.value) };
    } catch (e) {
      say('alert', `Not valid JSON: ${e.message}`);
      return null;
    }
  };
  const refusal = (r) => {
    if (r.status === 422 && Array.isArray(r.body && r.body.errors)) {
      return [h('p', {}, api.explain(r.status, r.body)), h('ul', { class: 'errors' }, r.body.errors.map((e) => h('li', {}, h('code', {}, e.field), ': ', e.message)))];
    }
    const parts = [h('p', {}, api.explain(r.status, r.body))];
    if (r.status === 412) parts.push(h('button', { type: 'button', onclick: () => reload() }, 'Load the current version into the editor'));
    return parts;
  };
  async function reload() {
    const r = await api.request('GET', keyPath(ns, key));
    const fresh = r.ok ? r.body : null;
    base.version = fresh ? fresh.version : null;
    base.text = fresh ? pretty(fresh.value) : '';
    text.value = base.text;
    fill(stale);
    checked = null;
    save.disabled = true;
    say('', fresh ? `Loaded version ${fresh.version}.` : 'The key does not exist.');
  }
  text.addEventListener('input', () => {
    checked = null;
    save.disabled = true;
  });
  check.addEventListener('click', async () => {
    const parsed = parse();
    if (!parsed) return;
    check.disabled = true;
    say('', 'Checking…');
    const r = await api.request('PUT', `${keyPath(ns, key)}?dry_run=true`, { body: { value: parsed.value, message: message.value || undefined }, headers: preconditions() });
    check.disabled = false;
    if (r.ok) {
      checked = text.value;
      save.disabled = false;
      say('ok', `Valid: saving would write version ${r.body.version}${r.body.created ? ' (a new key)' : ''}.`);
    } else {
      say('alert', ...refusal(r));
    }
  });
  save.addEventListener('click', async () => {
    if (checked !== text.value) return;
    const parsed = parse();
    if (!parsed) return;
    save.disabled = true;
    const r = await api.request('PUT', keyPath(ns, key), { body: { value: parsed.value, message: message.value || undefined }, headers: preconditions() });
    if (r.ok) {
      base.version = r.body.version;
      base.text = text.value;
      checked = null;
      message.value = '';
      say('ok', `Saved version ${r.body.version}.`);
      refreshSoon();
    } else {
      say('alert', ...refusal(r));
    }
  });
  const element = h('section', { class: 'editor card', 'aria-labelledby': 'editor-title' },
    h('h2', { id: 'editor-title' }, 'Edit'),
    h('p', { class: 'muted' }, 'Check runs the namespace schema on the server without writing (dry run); Save writes only if nobody saved in between (If-Match).'),
    h('label', { for: 'editor' }, 'Value (JSON)'), text,
    h('label', { for: 'message' }, 'Message'), message,
    h('div', { class: 'actions' }, check, ' ', save),
    stale, status);
  return {
    element,
    /** A live refresh: tell the user when the key moved past the editor's base. */
    sync(entry) {
      const now = entry ? entry.version : null;
      if (now !== base.version && text.value === base.text) {
        // No change of the user's own: follow the key.
        base.version = now;
        base.text = entry ? pretty(entry.value) : '';
        text.value = base.text;
        checked = null;
        save.disabled = true;
        fill(stale);
      } else if (now !== base.version) {
        fill(stale, h('p', { class: 'warn' }, now ? `Version ${now} was saved meanwhile; your editor is based on ${base.version ? `version ${base.version}` : 'no version'}, so saving will be refused (412). ` : 'The key was deleted meanwhile. '),
          h('button', { type: 'button', onclick: () => reload() }, 'Load the current version'));
      } else {
        fill(stale);
      }
    },
  };
}

/** `value` with every object's keys sorted. */
function canonical(value) {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, canonical(value[k])]));
  }
  return value;
}

function historyBlock(ns, key, versions, entry, writes) {
  if (!versions.length) return h('p', { class: 'muted' }, 'No history.');
  const rows = versions.map((v) => h('tr', { dataset: { version: v.version } },
    h('td', { class: 'num' }, String(v.version)),
    h('td', {}, clock(v.updated_at)),
    h('td', {}, v.updated_by || ''),
    h('td', {}, v.message || ''),
    h('td', {}, h('code', { class: 'preview' }, preview(v.value))),
    h('td', {}, writes && entry && v.version !== entry.version
      ? confirmButton(`Roll back to v${v.version}`, `Write version ${entry.version + 1} with the value of version ${v.version}?`, async () => {
        const r = await api.request('POST', `${keyPath(ns, key)}/rollback`, { body: { version: v.version }, headers: { 'If-Match': `"${entry.version}"` } });
        if (!r.ok) throw new api.ApiError(r.status, r.body);
        refreshSoon();
        return `Rolled back: version ${r.body.version} holds version ${v.version}'s value.`;
      })
      : '')));
  const options = (selected) => versions.map((v) => h('option', { value: String(v.version), selected: v.version === selected }, `version ${v.version}`));
  const left = keep(`diff-left:${ns}/${key}`, () => h('select', { id: 'diff-left' }, options(versions[Math.min(1, versions.length - 1)].version)));
  const right = keep(`diff-right:${ns}/${key}`, () => h('select', { id: 'diff-right' }, options(versions[0].version)));
  for (const [select, fallback] of [[left, versions[Math.min(1, versions.length - 1)].version], [right, versions[0].version]]) {
    const chosen = Number(select.value) || fallback;
    fill(select, options(chosen));
  }
  const out = h('div', { id: 'diff' });
  const show = () => {
    const a = versions.find((v) => String(v.version) === left.value);
    const b = versions.find((v) => String(v.version) === right.value);
    // Keys sorted on both sides, so the diff shows changed values, not key order.
    if (a && b) fill(out, diffTable(`version ${a.version}`, pretty(canonical(a.value)), `version ${b.version}`, pretty(canonical(b.value))));
  };
  left.onchange = show;
  right.onchange = show;
  if (versions.length > 1) show();
  return [
    table(null, ['Version', 'Written', 'By', 'Message', 'Value', ''], rows, { class: 'history' }),
    h('h3', {}, 'Compare two versions'),
    h('div', { class: 'inline' }, h('label', { for: 'diff-left' }, 'Left '), left, ' ', h('label', { for: 'diff-right' }, 'Right '), right, ' ', h('button', { type: 'button', id: 'diff-show', onclick: show }, 'Show diff')),
    out,
  ];
}

// ------------------------------------------------------------------ gateway

async function gatewayView() {
  const body = await api.get('/admin/upstreams');
  return [
    h('h1', { tabindex: '-1' }, 'Gateway'),
    h('p', { class: 'muted' }, 'Upstreams as this gateway replica sees them: health, circuit breaker, requests in flight.'),
    body.upstreams.map((u) => h('section', { class: 'upstream', dataset: { upstream: u.name } },
      h('h2', {}, u.name, ' ', h('span', { class: 'tag' }, u.kind)),
      table(null, ['Instance', 'Address', 'Status', 'Circuit', 'Failures', 'In flight'],
        u.instances.map((i) => [i.id, h('code', {}, i.address), badge(i.status), badge(i.circuit), String(i.consecutive_failures), String(i.in_flight)]),
        { empty: 'No instance.' }))),
  ];
}

// ------------------------------------------------------------------ start

function start() {
  if (!api.token()) {
    showSignIn();
    return;
  }
  showIdentity();
  startLive();
  render({ navigated: true });
}

api.adoptFragmentToken();
window.addEventListener('hashchange', () => {
  if (api.adoptFragmentToken()) {
    start();
    return;
  }
  render({ navigated: true });
});
setInterval(tickLeases, 1000);
start();
