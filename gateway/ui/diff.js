// diff.js: a side-by-side line diff (longest common subsequence) of two
// texts, as table rows: unchanged, removed (left only), added (right only).

import { h } from './dom.js';

/** The edit script of `a` → `b` (arrays of lines): [{op, left, right}]. */
export function lineDiff(a, b) {
  const n = a.length;
  const m = b.length;
  if (n * m > 4_000_000) {
    // Too large for the table: show both sides whole.
    return [...a.map((l) => ({ op: 'del', left: l, right: null })), ...b.map((r) => ({ op: 'add', left: null, right: r }))];
  }
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i -= 1) {
    for (let j = m - 1; j >= 0; j -= 1) {
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const out = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      out.push({ op: 'same', left: a[i], right: b[j] });
      i += 1;
      j += 1;
    } else if (lcs[i + 1][j] >= lcs[i][j + 1]) {
      out.push({ op: 'del', left: a[i], right: null });
      i += 1;
    } else {
      out.push({ op: 'add', left: null, right: b[j] });
      j += 1;
    }
  }
  while (i < n) out.push({ op: 'del', left: a[i++], right: null });
  while (j < m) out.push({ op: 'add', left: null, right: b[j++] });
  // Pair a run of removals with the additions that follow (a change).
  const paired = [];
  for (let k = 0; k < out.length; ) {
    if (out[k].op !== 'del') {
      paired.push(out[k]);
      k += 1;
      continue;
    }
    const dels = [];
    while (k < out.length && out[k].op === 'del') dels.push(out[k++].left);
    const adds = [];
    while (k < out.length && out[k].op === 'add') adds.push(out[k++].right);
    for (let x = 0; x < Math.max(dels.length, adds.length); x += 1) {
      const left = x < dels.length ? dels[x] : null;
      const right = x < adds.length ? adds[x] : null;
      paired.push({ op: left !== null && right !== null ? 'change' : left !== null ? 'del' : 'add', left, right });
    }
  }
  return paired;
}

const MARK = { same: ' ', del: '−', add: '+', change: '~' };

/** The diff table of two texts with column titles. */
export function diffTable(leftTitle, leftText, rightTitle, rightText) {
  const rows = lineDiff(leftText.split('\n'), rightText.split('\n'));
  const changed = rows.filter((r) => r.op !== 'same').length;
  let ln = 0;
  let rn = 0;
  return h('div', { class: 'scroll' },
    h('table', { class: 'diff', 'aria-label': `Differences between ${leftTitle} and ${rightTitle}` },
      h('colgroup', {}, h('col', { class: 'ln' }), h('col', {}), h('col', { class: 'mark' }), h('col', { class: 'ln' }), h('col', {})),
      h('caption', {}, changed ? `${changed} line${changed === 1 ? '' : 's'} differ` : 'The two versions are identical'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col', colspan: 2 }, leftTitle), h('th', { scope: 'col', class: 'mark' }, h('span', { class: 'sr' }, 'change')), h('th', { scope: 'col', colspan: 2 }, rightTitle))),
      h('tbody', {}, rows.map((r) => h('tr', { class: `d-${r.op}` },
        h('td', { class: 'ln' }, r.left !== null ? String((ln += 1)) : ''),
        h('td', { class: 'code left' }, r.left ?? ''),
        h('td', { class: 'mark', title: r.op }, MARK[r.op]),
        h('td', { class: 'ln' }, r.right !== null ? String((rn += 1)) : ''),
        h('td', { class: 'code right' }, r.right ?? ''))))));
}
