// dom.js: build elements without innerHTML (every value from the API is
// text, never markup), and a few formatting helpers.

/** h('a', {href: '#/x', class: 'k'}, 'text', child…) → an element. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(name, '');
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** The glyph and word of a health status: readable without colour. */
const STATUS = {
  passing: '✓',
  warning: '!',
  critical: '✗',
  unknown: '?',
  static: '•',
  closed: '✓',
  open: '✗',
  half_open: '…',
  in_sync: '✓',
  lagging: '…',
};

/** A status badge: a glyph, the word, and a class for its colour. */
export function badge(status, label) {
  const word = String(status);
  return h('span', { class: `badge s-${word}` }, h('span', { 'aria-hidden': 'true' }, STATUS[word] || '•'), ' ', label || word.replace('_', '-'));
}

/** "3 m 05 s" from milliseconds. */
export function duration(ms) {
  if (ms <= 0) return 'expired';
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} m ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} m`;
}

/** A local time of day for an RFC 3339 stamp (or now). */
export function clock(stamp) {
  const d = stamp ? new Date(stamp) : new Date();
  return Number.isNaN(d.getTime()) ? String(stamp) : d.toLocaleTimeString([], { hour12: false });
}

/** JSON, indented for reading. */
export function pretty(value) {
  return JSON.stringify(value, null, 2);
}

/** A table with a header row; rows are arrays of cells. */
export function table(caption, headers, rows, opts = {}) {
  return h('div', { class: 'scroll' },
    h('table', { class: opts.class || '' },
      caption ? h('caption', {}, caption) : null,
      h('thead', {}, h('tr', {}, headers.map((name) => h('th', { scope: 'col' }, name)))),
      h('tbody', {}, rows.length
        ? rows.map((cells) => (cells instanceof Node ? cells : h('tr', {}, cells.map((c) => h('td', {}, c)))))
        : h('tr', {}, h('td', { colspan: headers.length, class: 'muted' }, opts.empty || 'Nothing here.')))));
}
