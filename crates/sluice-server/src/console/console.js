// Sluice's console: jobs, one job (graph, partitions, checkpoints, bad records, SQL),
// live results, and a new-job editor that validates as you type. It uses only the
// public API under /api/v1, with the server's token when it asks for one.
'use strict';

const main = document.getElementById('main');
const notice = document.getElementById('notice');
const statusLine = document.getElementById('status');
let timer = null;       // the current page's refresh
let liveAbort = null;   // the current live-results stream

// ---- the API ---------------------------------------------------------------------

const TOKEN_KEY = 'sluice.token';
let asking = null;

function askToken() {
  if (!asking) {
    asking = new Promise((resolve) => {
      const dialog = document.getElementById('token-dialog');
      const form = document.getElementById('token-form');
      const input = document.getElementById('token-input');
      input.value = '';
      form.onsubmit = (e) => {
        e.preventDefault();
        localStorage.setItem(TOKEN_KEY, input.value);
        dialog.close();
        asking = null;
        resolve();
      };
      dialog.showModal();
      input.focus();
    });
  }
  return asking;
}

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) h['Authorization'] = 'Bearer ' + token;
  return h;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || ('HTTP ' + status));
    this.status = status;
    this.body = body || {};
  }
}

async function api(method, path, body) {
  for (;;) {
    const opts = { method, headers: headers(body ? { 'Content-Type': 'application/json' } : {}) };
    if (body) opts.body = JSON.stringify(body);
    const r = await fetch('/api/v1' + path, opts);
    if (r.status === 401) { await askToken(); continue; }
    if (r.status === 204) return null;
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = { error: text }; }
    if (!r.ok) throw new ApiError(r.status, data);
    return data;
  }
}

// ---- small helpers ---------------------------------------------------------------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (k === 'style') e.style.cssText = v; // through the CSSOM: the page's CSP allows no inline style
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svgEl(tag, attrs, ...children) {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'style') e.style.cssText = v; else e.setAttribute(k, v);
  }
  for (const c of children.flat()) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function showError(e) {
  notice.textContent = e instanceof Error ? e.message : String(e);
  notice.hidden = false;
}

function clearError() { notice.hidden = true; notice.textContent = ''; }

function fmtNum(n) {
  if (n === null || n === undefined) return '–';
  if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(1) + 'M';
  if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + 'k';
  return String(Math.round(n));
}

function fmtMs(ms) {
  if (ms === null || ms === undefined) return '–';
  const s = Math.abs(ms) / 1000;
  const sign = ms < 0 ? '-' : '';
  if (s < 1) return sign + Math.round(Math.abs(ms)) + ' ms';
  if (s < 120) return sign + s.toFixed(1) + ' s';
  if (s < 7200) return sign + (s / 60).toFixed(1) + ' min';
  if (s < 172800) return sign + (s / 3600).toFixed(1) + ' h';
  return sign + (s / 86400).toFixed(1) + ' d';
}

function fmtTime(ms) {
  if (ms === null || ms === undefined) return '–';
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

function fmtBytes(b) {
  if (b === null || b === undefined) return '–';
  if (b >= 1 << 20) return (b / (1 << 20)).toFixed(1) + ' MiB';
  if (b >= 1 << 10) return (b / (1 << 10)).toFixed(1) + ' KiB';
  return b + ' B';
}

function stateBadge(state) { return el('span', { class: 'state ' + state, 'data-state': state }, state); }

const GONE = Symbol('gone');
const ACTIVE = ['starting', 'running', 'restarting', 'stopping', 'cancelling'];

function sparkline(values, width, height) {
  const w = width || 120, h = height || 24;
  const svg = svgEl('svg', { class: 'spark', width: w, height: h, viewBox: `0 0 ${w} ${h}` });
  const vs = (values || []).slice(-120);
  if (vs.length < 2) return svg;
  const max = Math.max(1, ...vs);
  const pts = vs.map((v, i) => `${(i / (vs.length - 1)) * (w - 2) + 1},${h - 1 - (v / max) * (h - 3)}`);
  svg.append(svgEl('polyline', { points: pts.join(' '), fill: 'none', stroke: '#2f6fdd', 'stroke-width': 1.5 }));
  return svg;
}

function jobActions(job, after) {
  const active = ACTIVE.includes(job.state);
  const act = (label, fn, enabled, cls) => el('button', {
    class: cls || '', disabled: !enabled, 'data-action': label.toLowerCase(),
    onclick: async (e) => {
      e.preventDefault();
      e.target.disabled = true;
      let gone = false;
      try { clearError(); gone = (await fn()) === GONE; } catch (err) { showError(err); }
      if (after && !gone) after().catch(showError);
    },
  }, label);
  const name = encodeURIComponent(job.name);
  return el('div', { class: 'actions' },
    act('Stop', () => api('POST', `/jobs/${name}/stop`), active && job.state !== 'stopping' && job.state !== 'cancelling'),
    act('Resume', () => api('POST', `/jobs/${name}/resume`, {}), !active),
    act('Cancel', () => api('POST', `/jobs/${name}/cancel`), active && job.state !== 'cancelling', 'danger'),
    act('Delete', async () => {
      if (!confirm(`Delete job ${job.name}? Its checkpoints stay on disk.`)) return;
      await api('DELETE', `/jobs/${name}`);
      if (location.hash !== '#/') { location.hash = '#/'; return GONE; }
      return null;
    }, !active, 'danger'),
  );
}

// ---- pages -----------------------------------------------------------------------

async function jobsPage() {
  const body = el('tbody');
  main.replaceChildren(
    el('h1', {}, 'Jobs'),
    el('section', {},
      el('table', { id: 'jobs' },
        el('thead', {}, el('tr', {},
          el('th', {}, 'Job'), el('th', {}, 'State'), el('th', { class: 'num' }, 'Events/s'),
          el('th', {}, 'Last 2 min'), el('th', { class: 'num' }, 'Watermark lag'),
          el('th', { class: 'num' }, 'Late'), el('th', { class: 'num' }, 'Bad'),
          el('th', { class: 'num' }, 'Checkpoint'), el('th', { class: 'num' }, 'Restarts'), el('th', {}, ''))),
        body),
      el('p', { class: 'muted', id: 'no-jobs', hidden: true }, 'No jobs yet. ', el('a', { href: '#/new' }, 'Submit one.'))));
  async function refresh() {
    const jobs = await api('GET', '/jobs');
    document.getElementById('no-jobs').hidden = jobs.length > 0;
    body.replaceChildren(...jobs.map((j) => el('tr', { 'data-job': j.name },
      el('td', { class: 'wrap' }, el('a', { href: '#/jobs/' + encodeURIComponent(j.name) }, j.name),
        j.last_error ? el('div', { class: 'error-text' }, j.last_error) : null),
      el('td', {}, stateBadge(j.state)),
      el('td', { class: 'num rate' }, fmtNum(j.events_per_s)),
      el('td', {}, sparkline(j.events_per_s_history)),
      el('td', { class: 'num' }, fmtMs(j.watermark_lag_ms)),
      el('td', { class: 'num' }, fmtNum(j.late)),
      el('td', { class: 'num' }, fmtNum(j.bad)),
      el('td', { class: 'num' }, j.last_checkpoint
        ? `#${j.last_checkpoint.epoch}, ${fmtMs(Date.now() - j.last_checkpoint.at_ms)} ago` : '–'),
      el('td', { class: 'num' }, j.restarts),
      el('td', {}, jobActions(j, refresh)))));
  }
  await refresh();
  return refresh;
}

// Each node's tasks' counters, and rates from the previous sample.
let previous = null;

function nodeFigures(topology, tasks) {
  const now = performance.now();
  const byName = new Map(tasks.map((t) => [t.task, t]));
  const rates = new Map();
  for (const n of topology.nodes) {
    let rowsIn = 0, rowsOut = 0, fill = 0;
    for (const name of n.tasks) {
      const t = byName.get(name);
      if (!t) continue;
      rowsIn += t.rows_in; rowsOut += t.rows_out;
      if (t.capacity > 0) fill = Math.max(fill, t.queued / t.capacity);
    }
    const key = n.kind + ':' + n.name;
    let inRate = null, outRate = null;
    if (previous && previous.values.has(key)) {
      const p = previous.values.get(key);
      const dt = (now - previous.at) / 1000;
      if (dt > 0) { inRate = Math.max(0, (rowsIn - p.rowsIn) / dt); outRate = Math.max(0, (rowsOut - p.rowsOut) / dt); }
    }
    rates.set(key, { rowsIn, rowsOut, inRate, outRate, fill });
  }
  previous = { at: now, values: rates };
  return rates;
}

function drawGraph(topology, figures) {
  const nodes = topology.nodes;
  const depth = nodes.map(() => 0);
  for (let round = 0; round < nodes.length; round++) {
    for (const e of topology.edges) depth[e.to] = Math.max(depth[e.to], depth[e.from] + 1);
  }
  const columns = [];
  nodes.forEach((n, i) => { (columns[depth[i]] = columns[depth[i]] || []).push(i); });
  const W = 250, H = 78, GX = 90, GY = 24;
  const pos = [];
  columns.forEach((col, c) => col.forEach((i, r) => { pos[i] = { x: 10 + c * (W + GX), y: 10 + r * (H + GY) }; }));
  const width = 20 + columns.length * (W + GX) - GX;
  const height = 20 + Math.max(...columns.map((c) => c.length)) * (H + GY) - GY;
  const svg = svgEl('svg', { class: 'graph', id: 'graph', viewBox: `0 0 ${width} ${height}`, style: `max-width:${width}px` });
  svg.append(svgEl('defs', {}, svgEl('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
    svgEl('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#98a2b3' }))));
  for (const e of topology.edges) {
    const a = pos[e.from], b = pos[e.to];
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
    svg.append(svgEl('path', { class: 'edge', d: `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2 - 2} ${y2}`, 'marker-end': 'url(#arrow)' }));
    const label = (e.keyed ? 'by key' : '') + (e.steps.length ? (e.keyed ? ' · ' : '') + e.steps.length + ' step' + (e.steps.length > 1 ? 's' : '') : '');
    if (label) {
      const t = svgEl('text', { class: 'step', x: mx, y: (y1 + y2) / 2 - 4, 'text-anchor': 'middle' }, label);
      t.append(svgEl('title', {}, e.steps.join('\n')));
      svg.append(t);
    }
  }
  nodes.forEach((n, i) => {
    const p = pos[i];
    const f = figures.get(n.kind + ':' + n.name) || {};
    const g = svgEl('g', { class: 'node ' + n.kind, transform: `translate(${p.x},${p.y})`, 'data-node': n.name });
    g.append(svgEl('rect', { width: W, height: H }));
    const short = (s, k) => (s.length > k ? s.slice(0, k - 1) + '…' : s);
    g.append(svgEl('text', { x: 10, y: 18, 'font-weight': 600 }, short(`${n.kind === 'operator' ? '' : n.kind + ' '}${n.name}`, 34)));
    g.append(svgEl('text', { class: 'sub', x: 10, y: 34 }, short(n.detail + (n.updating ? ' · updating' : ''), 40)));
    const rate = (r) => (r === null || r === undefined ? '…' : fmtNum(r));
    // A source's task counts the rows it reads as its input.
    const inOut = n.kind === 'source' ? `reads ${rate(f.inRate)} rows/s` : n.kind === 'sink'
      ? `in ${rate(f.inRate)} rows/s` : `in ${rate(f.inRate)} · out ${rate(f.outRate)} rows/s`;
    g.append(svgEl('text', { class: 'sub rates', x: 10, y: 52 }, inOut));
    if (n.kind !== 'source') {
      const fill = f.fill || 0;
      g.append(svgEl('text', { class: 'sub', x: 10, y: 69 }, `queue ${Math.round(fill * 100)}%`));
      g.append(svgEl('rect', { x: 80, y: 62, width: 150, height: 7, fill: '#eef1f5', rx: 3 }));
      g.append(svgEl('rect', { class: 'fill', x: 80, y: 62, width: Math.max(1, 150 * fill), height: 7, rx: 3,
        fill: fill > 0.8 ? '#d23b3b' : fill > 0.5 ? '#d98a00' : '#1f9d55' }));
    }
    g.append(svgEl('title', {}, `${n.kind} ${n.name}\n${n.detail}\ntasks: ${n.tasks.join(', ')}`));
    svg.append(g);
  });
  return svg;
}

async function jobPage(name) {
  previous = null;
  const enc = encodeURIComponent(name);
  const head = el('h1', {});
  const graph = el('div', { id: 'graph-box' });
  const parts = el('tbody');
  const cps = el('tbody');
  const bad = el('tbody');
  const sinks = el('div', { id: 'sinks' });
  const sql = el('pre', { class: 'sql', id: 'job-sql' });
  const lastError = el('p', { class: 'error-text' });
  main.replaceChildren(head, lastError,
    el('section', {}, el('h2', {}, 'Graph'), graph),
    el('section', {}, el('h2', {}, 'Live results'), sinks),
    el('div', { class: 'grid2' },
      el('section', {}, el('h2', {}, 'Source partitions'),
        el('table', { id: 'partitions' }, el('thead', {}, el('tr', {},
          el('th', {}, 'Source'), el('th', { class: 'num' }, 'Partition'), el('th', {}, 'Watermark'),
          el('th', { class: 'num' }, 'Watermark lag'), el('th', { class: 'num' }, 'Consumer lag'))), parts)),
      el('section', {}, el('h2', {}, 'Checkpoints'),
        el('table', { id: 'checkpoints' }, el('thead', {}, el('tr', {},
          el('th', { class: 'num' }, 'Epoch'), el('th', {}, 'Taken'), el('th', { class: 'num' }, 'Size'),
          el('th', { class: 'num' }, 'Duration'), el('th', { class: 'num' }, 'Rows out'), el('th', {}, ''))), cps))),
    el('section', {}, el('h2', {}, 'Newest bad records'),
      el('table', { id: 'bad-records' }, el('thead', {}, el('tr', {},
        el('th', {}, 'When'), el('th', {}, 'Table'), el('th', {}, 'Topic / file'), el('th', { class: 'num' }, 'Partition'),
        el('th', { class: 'num' }, 'Offset / line'), el('th', {}, 'Error'), el('th', {}, 'Record'))), bad)),
    el('section', {}, el('h2', {}, 'SQL'), sql));
  let sinkNames = '';
  async function refresh() {
    const [job, checkpoints] = await Promise.all([api('GET', `/jobs/${enc}`), api('GET', `/jobs/${enc}/checkpoints`)]);
    const d = job.detail || {};
    head.replaceChildren(...[job.name, stateBadge(job.state),
      el('span', { class: 'muted', style: 'font-size:13px;font-weight:400' },
        `${fmtNum(job.events_per_s)} events/s · ${fmtNum(job.events_in)} in · ${fmtNum(job.rows_out)} out · restarts ${job.restarts}`),
      d.restored_from ? el('span', { class: 'muted', id: 'restored-from', style: 'font-size:13px;font-weight:400' },
        `restored from checkpoint ${d.restored_from}`) : null,
      jobActions(job, refresh)].filter((x) => x !== null));
    lastError.textContent = job.last_error || '';
    if (sql.textContent !== job.sql) sql.textContent = job.sql || '';
    if (d.topology) {
      graph.replaceChildren(drawGraph(d.topology, nodeFigures(d.topology, d.tasks || [])));
      const names = d.topology.nodes.filter((n) => n.kind === 'sink').map((n) => n.name);
      if (names.join('\n') !== sinkNames) {
        sinkNames = names.join('\n');
        sinks.replaceChildren(el('span', { class: 'muted' }, 'Watch the rows a table receives: '),
          ...names.map((s) => el('a', { href: `#/jobs/${enc}/live/${encodeURIComponent(s)}`, 'data-sink': s, style: 'margin-right:14px' }, s)));
      }
    } else {
      graph.replaceChildren(el('p', { class: 'muted' }, 'The graph shows once the job has started.'));
    }
    const lag = new Map((d.kafka_lag || []).map(([s, p, l]) => [s + '/' + p, l]));
    const now = Date.now();
    const wms = d.partition_watermarks || [];
    parts.replaceChildren(...(wms.length ? wms.map(([s, p, wm]) => el('tr', {},
      el('td', {}, s), el('td', { class: 'num' }, p), el('td', {}, fmtTime(wm)),
      el('td', { class: 'num' }, fmtMs(now - wm)), el('td', { class: 'num' }, fmtNum(lag.get(s + '/' + p)))))
      : [el('tr', {}, el('td', { colspan: 5, class: 'muted' }, 'No event time seen yet.'))]));
    const active = ACTIVE.includes(job.state);
    cps.replaceChildren(...(checkpoints.length ? checkpoints.map((c) => el('tr', { 'data-epoch': c.epoch },
      el('td', { class: 'num' }, c.epoch), el('td', { class: c.problem ? 'wrap' : '' }, c.problem ? el('span', { class: 'error-text' }, c.problem) : fmtTime(c.at_ms)),
      el('td', { class: 'num' }, fmtBytes(c.bytes)), el('td', { class: 'num' }, fmtMs(c.duration_ms)),
      el('td', { class: 'num' }, fmtNum(c.rows_out)),
      el('td', {}, el('button', {
        disabled: active || !!c.problem, title: active ? 'Stop the job first' : 'Start the job again from this checkpoint',
        'data-action': 'restore',
        onclick: async (e) => {
          e.target.disabled = true;
          try { clearError(); await api('POST', `/jobs/${enc}/resume`, { from_checkpoint: String(c.epoch) }); } catch (err) { showError(err); }
          refresh().catch(showError);
        },
      }, 'Restore this one'))))
      : [el('tr', {}, el('td', { colspan: 6, class: 'muted' }, 'No checkpoints yet.'))]));
    const records = d.bad_records || [];
    bad.replaceChildren(...(records.length ? records.slice(0, 20).map((b) => el('tr', {},
      el('td', {}, fmtTime(b.at_ms)), el('td', {}, b.table), el('td', {}, b.origin),
      el('td', { class: 'num' }, b.partition), el('td', { class: 'num' }, b.offset),
      el('td', { class: 'error-text wrap' }, b.error), el('td', { class: 'wrap' }, el('code', { class: 'raw' }, b.raw))))
      : [el('tr', {}, el('td', { colspan: 7, class: 'muted' }, `None (${fmtNum(job.bad)} in all).`))]));
  }
  await refresh();
  return refresh;
}

// Reads a server-sent-event stream with fetch (so that the token goes in a header).
async function readEvents(path, signal, onEvent) {
  for (;;) {
    const r = await fetch('/api/v1' + path, { headers: headers({ Accept: 'text/event-stream' }), signal });
    if (r.status === 401) { await askToken(); continue; }
    if (!r.ok) {
      let body = {};
      try { body = await r.json(); } catch (_) { /* not JSON */ }
      throw new ApiError(r.status, body);
    }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const ev = { event: 'message', data: '', id: null };
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) continue;
          const i = line.indexOf(':');
          const k = i < 0 ? line : line.slice(0, i);
          const v = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
          if (k === 'event') ev.event = v;
          else if (k === 'data') ev.data += (ev.data ? '\n' : '') + v;
          else if (k === 'id') ev.id = v;
        }
        if (block.trim() && !block.startsWith(':')) onEvent(ev);
      }
    }
  }
}

// Rows with numeric `lat` and `lon` on a map: every position seen drawn faintly (the
// track appears as it is driven), the newest position of each key (the row's first
// column) as a labelled dot.
function liveMap() {
  const W = 760, H = 460, TRAIL = 6000;
  const svg = svgEl('svg', { id: 'live-map', viewBox: `0 0 ${W} ${H}`, style: 'width:100%;max-width:760px;background:#f8fafc;border-radius:6px' });
  const trail = [];
  const latest = new Map();
  let due = false;
  const colors = ['#2f6fdd', '#d23b3b', '#1f9d55', '#d98a00', '#7c3aed', '#0891b2', '#be185d', '#4d7c0f', '#b45309', '#334155'];
  function draw() {
    due = false;
    if (!trail.length) return;
    let [minLat, maxLat, minLon, maxLon] = [Infinity, -Infinity, Infinity, -Infinity];
    for (const [la, lo] of trail) {
      minLat = Math.min(minLat, la); maxLat = Math.max(maxLat, la);
      minLon = Math.min(minLon, lo); maxLon = Math.max(maxLon, lo);
    }
    const k = Math.cos(((minLat + maxLat) / 2) * Math.PI / 180);
    const spanX = Math.max((maxLon - minLon) * k, 1e-6), spanY = Math.max(maxLat - minLat, 1e-6);
    const scale = Math.min((W - 60) / spanX, (H - 60) / spanY);
    const x = (lo) => 30 + (lo - minLon) * k * scale;
    const y = (la) => H - 30 - (la - minLat) * scale;
    const parts = [];
    const step = Math.max(1, Math.ceil(trail.length / 1500));
    for (let i = 0; i < trail.length; i += step) {
      const [la, lo] = trail[i];
      parts.push(svgEl('circle', { class: 'trail', cx: x(lo).toFixed(1), cy: y(la).toFixed(1), r: 1.6, fill: '#cbd5e1' }));
    }
    let i = 0;
    for (const [key, p] of [...latest.entries()].sort()) {
      const c = colors[i++ % colors.length];
      const g = svgEl('g', { class: 'car', 'data-key': key });
      g.append(svgEl('circle', { class: 'car', cx: x(p.lon).toFixed(1), cy: y(p.lat).toFixed(1), r: 7, fill: c, stroke: '#fff', 'stroke-width': 2 }));
      g.append(svgEl('text', { x: (x(p.lon) + 10).toFixed(1), y: (y(p.lat) + 4).toFixed(1), 'font-size': 12, fill: '#1d2330' }, key));
      parts.push(g);
    }
    svg.replaceChildren(...parts);
  }
  return {
    svg,
    take(row) {
      const key = String(Object.values(row)[0]);
      trail.push([row.lat, row.lon]);
      if (trail.length > TRAIL) trail.splice(0, trail.length - TRAIL);
      latest.set(key, row);
      if (!due) { due = true; setTimeout(draw, 200); }
    },
  };
}

// An updating result's rows as they stand: each change replayed by the row's key (its
// first column), sorted by the second column (descending) then the third.
function liveStandings() {
  const rows = new Map();
  const table = el('table', { class: 'rows', id: 'beside-rows' });
  return {
    table,
    take(row) {
      const op = row.op;
      const data = Object.assign({}, row);
      delete data.op;
      const key = String(Object.values(data)[0]);
      if (op === '-U' || op === '-D') rows.delete(key); else rows.set(key, data);
      const list = [...rows.values()];
      if (!list.length) { table.replaceChildren(); return; }
      const cols = Object.keys(list[0]);
      // A top N keyed by its rank (place, rank, rn) is in rank order; other standings are
      // ranked here by their second column, most first, then their third, least first.
      const ranked = /^(place|rank|position|rn|row_number)$/i.test(cols[0]);
      if (ranked) list.sort((a, b) => Number(a[cols[0]]) - Number(b[cols[0]]));
      else list.sort((a, b) => (Number(b[cols[1]]) - Number(a[cols[1]])) || (Number(a[cols[2]]) - Number(b[cols[2]])));
      const cell = (r, c) => el('td', {}, r[c] === null ? 'null' : String(r[c]));
      table.replaceChildren(el('thead', {}, el('tr', {}, ...(ranked ? [] : [el('th', {}, '#')]), ...cols.map((c) => el('th', {}, c)))),
        el('tbody', {}, ...list.map((r, i) => el('tr', {}, ...(ranked ? [] : [el('td', { class: 'num' }, i + 1)]), ...cols.map((c) => cell(r, c))))));
    },
  };
}

// An updating result with a `status` (or `health`) column as a card per key (its first
// column): a host's or a machine's state now, coloured by it.
function liveCards() {
  const cards = new Map();
  const box = el('div', { id: 'live-cards', class: 'cards' });
  const tone = (s) => (/^(critical)$/i.test(s) ? 'bad' : /^(alert|warning)$/i.test(s) ? 'warn' : 'ok');
  return {
    box,
    take(row) {
      const op = row.op;
      const data = Object.assign({}, row);
      delete data.op;
      const [keyCol, ...rest] = Object.keys(data);
      const key = String(data[keyCol]);
      const statusCol = 'status' in data ? 'status' : 'health';
      const status = String(data[statusCol]);
      if (op === '-U' || op === '-D') { if (op === '-D') cards.delete(key); return; }
      cards.set(key, el('div', { class: 'card ' + tone(status), 'data-key': key, 'data-status': status },
        el('b', {}, key), el('div', { class: 'card-status' }, status),
        ...rest.filter((c) => c !== statusCol).map((c) => el('div', { class: 'muted' }, `${c}: ${
          typeof data[c] === 'number' && !Number.isInteger(data[c]) ? data[c].toFixed(1) : data[c]}`))));
      box.replaceChildren(...[...cards.keys()].sort().map((k) => cards.get(k)));
    },
  };
}

async function livePage(name, sink, beside) {
  const enc = encodeURIComponent(name);
  const KEEP = 200;
  let received = 0, dropped = 0, columns = null, paused = false;
  const head = el('thead');
  const body = el('tbody');
  const counts = el('div', { class: 'counters' });
  const state = el('span', { class: 'muted', id: 'live-state' }, 'connecting…');
  const pause = el('button', { onclick: () => { paused = !paused; pause.textContent = paused ? 'Go on' : 'Pause'; } }, 'Pause');
  function showCounts() {
    counts.replaceChildren(
      el('div', {}, el('b', { id: 'live-received' }, received), 'rows received'),
      el('div', {}, el('b', { id: 'live-dropped' }, dropped), 'dropped (this page was too slow)'));
  }
  showCounts();
  const map = liveMap();
  const cards = liveCards();
  const cardBox = el('section', { id: 'card-box', hidden: true }, el('h2', {}, 'Now'), cards.box);
  const mapBox = el('section', { id: 'map-box', hidden: true }, el('h2', {}, 'Map'),
    el('div', { style: 'display:flex;gap:16px;align-items:flex-start;flex-wrap:wrap' }, map.svg,
      beside ? el('div', {}, el('h2', {}, `${beside.sink} (${beside.job})`), beside.view.table) : null));
  main.replaceChildren(
    el('h1', {}, el('a', { href: '#/jobs/' + enc }, name), '→', sink, el('span', { class: 'muted', style: 'font-size:13px' }, 'live results')),
    mapBox,
    cardBox,
    el('section', {}, el('div', { class: 'form-row' }, pause, state), counts,
      el('p', { class: 'muted' }, `The rows the table ${sink} receives, newest first (the last ${KEEP}), as they arrive: before their epoch commits, so a restore may show some again.`),
      el('div', { style: 'overflow:auto' }, el('table', { class: 'rows', id: 'live-rows' }, head, body))));
  liveAbort = new AbortController();
  const signal = liveAbort.signal;
  readEvents(`/jobs/${enc}/sinks/${encodeURIComponent(sink)}/rows`, signal, (ev) => {
    if (ev.event === 'open') { state.textContent = 'watching'; return; }
    if (ev.event === 'dropped') { dropped = JSON.parse(ev.data).dropped; showCounts(); return; }
    if (ev.event !== 'row') return;
    received++;
    if (paused) { showCounts(); return; }
    const row = JSON.parse(ev.data);
    if (typeof row.lat === 'number' && typeof row.lon === 'number') {
      mapBox.hidden = false;
      map.take(row);
    }
    if (('status' in row || 'health' in row) && 'op' in row) {
      cardBox.hidden = false;
      cards.take(row);
    }
    if (!columns) {
      columns = Object.keys(row);
      head.replaceChildren(el('tr', {}, el('th', { class: 'num' }, '#'), ...columns.map((c) => el('th', {}, c))));
    }
    body.prepend(el('tr', {}, el('td', { class: 'num' }, ev.id), ...columns.map((c) => el('td', {}, row[c] === null ? 'null' : String(row[c])))));
    while (body.childElementCount > KEEP) body.lastElementChild.remove();
    showCounts();
  }).then(() => { state.textContent = 'the stream ended (the job was deleted)'; })
    .catch((e) => { if (!signal.aborted) { state.textContent = 'not watching'; showError(e); } });
  if (beside) {
    readEvents(`/jobs/${encodeURIComponent(beside.job)}/sinks/${encodeURIComponent(beside.sink)}/rows`, signal, (ev) => {
      if (ev.event === 'row') beside.view.take(JSON.parse(ev.data));
    }).catch((e) => { if (!signal.aborted) showError(e); });
  }
  return null;
}

const EXAMPLE = `-- Readings from the built-in IoT generator, averaged per sensor every 10 seconds.
CREATE TABLE readings (
    sensor_id     TEXT NOT NULL,
    location      TEXT NOT NULL,
    temperature   DOUBLE,
    humidity      DOUBLE,
    pressure      DOUBLE,
    battery_level DOUBLE,
    event_time    TIMESTAMP NOT NULL,
    reading_id    BIGINT,
    WATERMARK FOR event_time AS event_time - INTERVAL '2' SECOND
) WITH (connector = 'generator', profile = 'iot', keys = '20', rate = '200', speedup = '1');

CREATE TABLE per_sensor WITH (connector = 'blackhole');

INSERT INTO per_sensor
SELECT sensor_id, window_start, window_end, count(*) AS readings, avg(temperature) AS avg_temp
FROM TUMBLE(readings, event_time, INTERVAL '10' SECOND)
GROUP BY sensor_id, window_start, window_end;
`;

function newJobPage() {
  const name = el('input', { type: 'text', id: 'job-name', placeholder: 'job name', value: 'my-job', 'aria-label': 'job name' });
  const text = el('textarea', { id: 'sql', spellcheck: 'false', 'aria-label': 'SQL' });
  text.value = sessionStorage.getItem('sluice.draft') || EXAMPLE;
  const marks = el('div', { class: 'marks', 'aria-hidden': 'true' });
  const gutter = el('div', { class: 'gutter', 'aria-hidden': 'true' });
  const problem = el('div', { id: 'sql-problem' });
  const plan = el('pre', { class: 'sql', id: 'sql-plan', hidden: true });
  const submit = el('button', { class: 'primary', id: 'submit', type: 'button' }, 'Submit');
  main.replaceChildren(el('h1', {}, 'New job'),
    el('section', {},
      el('div', { class: 'form-row' }, name, submit),
      el('div', { class: 'editor' }, marks, gutter, text),
      problem),
    el('section', {}, el('h2', {}, 'Plan'), plan));
  let seq = 0, timerId = null;
  function mark(line, column) {
    // The same text behind the textarea, one block per line: the bad line shaded and
    // the spot underlined. The textarea grows with its text, so nothing scrolls but
    // sideways.
    const lines = text.value.split('\n');
    marks.replaceChildren(...lines.map((l, i) => {
      if (line && i === line - 1) {
        const at = Math.max(0, Math.min((column || 1) - 1, l.length));
        const word = (l.slice(at).match(/^\S+/) || [' '])[0];
        return el('div', { class: 'bad-line' }, l.slice(0, at), el('span', { class: 'bad-at', id: 'bad-at' }, word), l.slice(at + word.length));
      }
      return el('div', {}, l || ' ');
    }));
    gutter.replaceChildren(...lines.map((_, i) => el('div', { class: line && i === line - 1 ? 'bad' : '' }, i + 1)));
    text.style.height = 'auto';
    text.style.height = (text.scrollHeight + 2) + 'px';
    marks.scrollLeft = text.scrollLeft;
  }
  async function validate() {
    const mine = ++seq;
    sessionStorage.setItem('sluice.draft', text.value);
    try {
      const r = await api('POST', '/validate', { sql: text.value });
      if (mine !== seq) return;
      problem.className = 'ok';
      problem.textContent = 'The job is valid.';
      plan.hidden = false;
      plan.textContent = r.plan;
      mark(null, null);
    } catch (e) {
      if (mine !== seq) return;
      if (!(e instanceof ApiError) || e.status !== 400) { showError(e); return; }
      problem.className = 'bad';
      const where = e.body.line ? `Line ${e.body.line}, column ${e.body.column}: ` : '';
      problem.textContent = where + e.message;
      problem.dataset.line = e.body.line || '';
      problem.dataset.column = e.body.column || '';
      plan.hidden = true;
      mark(e.body.line, e.body.column);
    }
  }
  text.addEventListener('input', () => { mark(null, null); clearTimeout(timerId); timerId = setTimeout(validate, 300); });
  text.addEventListener('scroll', () => { marks.scrollLeft = text.scrollLeft; });
  submit.addEventListener('click', async () => {
    submit.disabled = true;
    try {
      clearError();
      const job = await api('POST', '/jobs', { name: name.value.trim(), sql: text.value });
      sessionStorage.removeItem('sluice.draft');
      location.hash = '#/jobs/' + encodeURIComponent(job.name);
    } catch (e) {
      if (e instanceof ApiError && e.status === 400 && e.body.line) {
        await validate();
      } else {
        showError(e);
      }
    } finally {
      submit.disabled = false;
    }
  });
  mark(null, null);
  validate();
  return null;
}

// ---- routing ---------------------------------------------------------------------

async function route() {
  clearInterval(timer);
  timer = null;
  if (liveAbort) { liveAbort.abort(); liveAbort = null; }
  clearError();
  const hash = location.hash || '#/';
  document.getElementById('nav-jobs').classList.toggle('active', hash === '#/' || hash.startsWith('#/jobs'));
  document.getElementById('nav-new').classList.toggle('active', hash === '#/new');
  let m;
  let page;
  if (hash === '#/new') page = () => newJobPage();
  else if ((m = hash.match(/^#\/jobs\/([^/]+)\/live\/([^/?]+)(?:\?beside=([^/]+)\/([^/]+))?$/))) {
    // `?beside=job/table`: an updating result shown beside (a leaderboard by a map).
    const beside = m[3] ? { job: decodeURIComponent(m[3]), sink: decodeURIComponent(m[4]), view: liveStandings() } : null;
    page = () => livePage(decodeURIComponent(m[1]), decodeURIComponent(m[2]), beside);
  }
  else if ((m = hash.match(/^#\/jobs\/([^/]+)$/))) page = () => jobPage(decodeURIComponent(m[1]));
  else page = () => jobsPage();
  try {
    const refresh = await page();
    if (refresh) {
      timer = setInterval(async () => {
        try { await refresh(); statusLine.textContent = 'updated ' + new Date().toLocaleTimeString(); } catch (e) { showError(e); }
      }, 2000);
    }
  } catch (e) {
    showError(e);
  }
}

window.addEventListener('hashchange', route);
route();
