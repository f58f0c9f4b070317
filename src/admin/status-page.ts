// The status page the admin API serves at GET /: one self-contained HTML document (inline CSS and JS,
// no external asset, a strict Content-Security-Policy allowing exactly these inline blocks by hash).
// The page polls /readyz, /v1/nodes, /v1/drains, /v1/audit and /v1/stats every second and redraws
// itself; it builds every element with textContent (nothing the director says is parsed as HTML).
// A token given as /?token=… is sent on as `Authorization: Bearer` with each of the page's requests.
import { createHash } from 'node:crypto';

const STYLE = `
:root { --bg: #f6f7f9; --card: #fff; --ink: #1d232b; --muted: #687385; --line: #e3e6eb; --ok: #1f9d55;
  --warn: #c77c02; --bad: #c8372d; --bar: #3b6fd8; --track: #e8ecf3; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: var(--bg); color: var(--ink); }
header { display: flex; align-items: baseline; gap: 12px; padding: 14px 24px; background: var(--card); border-bottom: 1px solid var(--line); }
h1 { font-size: 18px; margin: 0; }
h2 { font-size: 15px; margin: 0 0 10px; }
main { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 16px; padding: 16px 24px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; min-width: 0; }
section.wide { grid-column: 1 / -1; }
.muted { color: var(--muted); font-weight: normal; }
.pill { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; background: var(--track); }
.pill.good { background: #daf2e3; color: var(--ok); }
.pill.warn { background: #fbecd0; color: var(--warn); }
.pill.bad { background: #f8dcda; color: var(--bad); }
.banner { margin: 12px 24px 0; padding: 10px 14px; border-radius: 6px; background: #f8dcda; color: var(--bad); font-weight: 600; }
.node { display: grid; grid-template-columns: 140px 210px minmax(60px, 1fr) 64px; align-items: center; gap: 10px; padding: 6px 0; border-top: 1px solid var(--line); }
.node:first-child { border-top: none; }
.addr { display: block; font-size: 12px; }
.badges { display: flex; gap: 6px; align-items: center; flex-wrap: wrap; }
.track { height: 14px; background: var(--track); border-radius: 7px; overflow: hidden; }
.fill { height: 100%; width: 0; background: var(--bar); border-radius: 7px; transition: width .4s ease; }
.fill.warn { background: var(--warn); }
.fill.done { background: var(--ok); }
.fill.bad { background: var(--bad); }
.count { text-align: right; font-variant-numeric: tabular-nums; font-weight: 600; font-size: 16px; }
.drain { padding: 8px 0; border-top: 1px solid var(--line); }
.drain:first-child { border-top: none; }
.drain .track { margin: 6px 0 4px; }
.figures { font-size: 12px; color: var(--muted); font-variant-numeric: tabular-nums; }
svg { width: 100%; height: 180px; display: block; }
svg text { font-size: 11px; fill: var(--muted); }
.grid { stroke: var(--line); stroke-width: 1; }
.series { fill: none; stroke-width: 2; stroke-linejoin: round; }
.s-admissions { stroke: #3b6fd8; background: #3b6fd8; }
.s-forwarded { stroke: #1f9d55; background: #1f9d55; }
.s-rejects { stroke: #c8372d; background: #c8372d; }
.legend { display: flex; gap: 16px; font-size: 12px; margin-top: 6px; font-variant-numeric: tabular-nums; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 5px; vertical-align: -1px; }
table { border-collapse: collapse; width: 100%; font-size: 12px; }
th, td { text-align: left; padding: 4px 8px 4px 0; border-top: 1px solid var(--line); white-space: nowrap; }
th { color: var(--muted); font-weight: 600; border-top: none; }
td.mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
@media (max-width: 900px) { main { grid-template-columns: 1fr; } .node { grid-template-columns: 110px 1fr 60px; } .node .badges { display: none; } }
`;

// Plain ES2020, no template literals (this file is itself a template literal).
const SCRIPT = `
'use strict';
(function () {
  var POLL_MS = 1000;
  var WINDOW_MS = 5 * 60 * 1000;
  var AUDIT_ROWS = 15;
  var FINISHED_DRAINS = 5;
  var SVGNS = 'http://www.w3.org/2000/svg';
  var token = new URLSearchParams(location.search).get('token');
  var headers = token ? { authorization: 'Bearer ' + token } : {};
  var samples = [];
  var polls = 0;

  function $(id) { return document.getElementById(id); }
  function h(tag, props, children) {
    var e = document.createElement(tag);
    Object.keys(props || {}).forEach(function (k) {
      if (k === 'text') e.textContent = String(props[k]);
      else if (k === 'cls') e.className = props[k];
      else e.setAttribute(k, String(props[k]));
    });
    (children || []).forEach(function (c) {
      if (c !== null && c !== undefined) e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    });
    return e;
  }
  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVGNS, tag);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, String(attrs[k])); });
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function num(v) { return typeof v === 'number' && isFinite(v) ? v : 0; }
  function pill(text, kind) { return h('span', { cls: 'pill ' + kind, text: text }); }
  function stateKind(s) {
    if (s === 'active' || s === 'healthy' || s === 'completed' || s === 'running') return 'good';
    if (s === 'unhealthy' || s === 'failed') return 'bad';
    return 'warn';
  }
  function duration(s) {
    if (typeof s !== 'number' || !isFinite(s) || s < 0) return '-';
    s = Math.ceil(s);
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm ' + String(s % 60).padStart(2, '0') + 's';
    return Math.floor(s / 3600) + 'h ' + String(Math.floor((s % 3600) / 60)).padStart(2, '0') + 'm';
  }
  function clock(iso) {
    var d = new Date(iso);
    return isNaN(d.getTime()) ? '-' : d.toLocaleTimeString([], { hour12: false });
  }
  function bar(fraction, extra) {
    var fill = h('div', { cls: 'fill' + (extra ? ' ' + extra : '') });
    fill.style.width = (Math.max(0, Math.min(1, fraction)) * 100).toFixed(2) + '%';
    return h('div', { cls: 'track' }, [fill]);
  }

  async function getJson(path) {
    var r = await fetch(path, { headers: headers, cache: 'no-store' });
    var body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    return { status: r.status, ok: r.ok, body: body };
  }
  function refusal(r) {
    if (r.status === 401) return 'Unauthorized: open this page as /?token=YOUR_ADMIN_TOKEN';
    var e = r.body && r.body.error;
    return 'The director answered ' + r.status + (e && e.message ? ': ' + e.message : '');
  }
  function banner(msg) {
    var b = $('banner');
    b.hidden = !msg;
    b.textContent = msg || '';
  }

  function renderReady(r, stats) {
    var el = $('ready');
    var ok = r && r.ready === true;
    el.className = 'pill ' + (ok ? 'good' : 'bad');
    el.textContent = ok ? 'ready' : 'not ready: ' + ((r && r.reason) || 'unknown');
    el.setAttribute('data-ready', ok ? 'true' : 'false');
    $('director').textContent = stats && stats.director ? 'director ' + stats.director : '';
    $('updated').textContent = 'updated ' + clock(stats && stats.time);
  }

  function renderNodes(items) {
    var max = Math.max.apply(null, [1].concat(items.map(function (n) { return num(n.sessions); })));
    var total = items.reduce(function (a, n) { return a + num(n.sessions); }, 0);
    $('nodes-total').textContent = total + ' sessions on ' + items.length + ' nodes';
    $('nodes').replaceChildren.apply($('nodes'), items.map(function (n) {
      var off = n.state !== 'active' || n.health === 'unhealthy';
      return h('div', { cls: 'node', 'data-node': n.id, 'data-state': n.state, 'data-health': n.health }, [
        h('div', {}, [h('strong', { text: n.id }), h('span', { cls: 'muted addr', text: n.address })]),
        h('div', { cls: 'badges' }, [pill(n.state, stateKind(n.state)), pill(n.health, stateKind(n.health)), h('span', { cls: 'muted', text: 'w ' + n.weight })]),
        bar(num(n.sessions) / max, off ? 'warn' : ''),
        h('div', { cls: 'count', text: String(num(n.sessions)) })
      ]);
    }));
  }

  function drainFraction(d) {
    if (d.state === 'completed') return 1;
    var total = num(d.total);
    if (total <= 0) return num(d.remaining) > 0 ? 0 : 1;
    return (total - num(d.remaining)) / total;
  }
  function renderDrains(items) {
    var active = items.filter(function (d) { return d.state === 'running' || d.state === 'waiting'; });
    var finished = items.filter(function (d) { return d.state !== 'running' && d.state !== 'waiting'; })
      .sort(function (a, b) { return String(b.finished_at).localeCompare(String(a.finished_at)); })
      .slice(0, FINISHED_DRAINS);
    $('drains-count').textContent = active.length === 0 ? 'none in progress' : active.length + ' in progress';
    var rows = active.concat(finished).map(function (d) {
      var live = d.state === 'running' || d.state === 'waiting';
      var figures = [num(d.moved) + '/' + num(d.total) + ' moved', num(d.remaining) + ' remaining', num(d.failed) + ' failed'];
      if (num(d.ended) > 0) figures.push(num(d.ended) + ' ended');
      if (d.state === 'running') figures.push(num(d.rate).toFixed(1) + '/s', 'ETA ' + duration(d.eta_s));
      if (d.state === 'waiting') figures.push('migrates the rest at ' + clock(d.deadline_at));
      if (!live) figures.push('finished ' + clock(d.finished_at));
      if (d.last_error) figures.push('last error: ' + d.last_error);
      var kind = d.state === 'completed' ? 'done' : d.state === 'failed' ? 'bad' : live ? '' : 'warn';
      return h('div', { cls: 'drain', 'data-drain': d.id, 'data-node': d.node, 'data-state': d.state }, [
        h('div', {}, [
          h('strong', { text: (d.cause === 'failover' ? 'Failover of ' : 'Drain of ') + d.node }), ' ',
          pill(d.state, stateKind(d.state)),
          h('span', { cls: 'muted', text: '  ' + d.id + ' · ' + d.mode + (d.director ? ' · by ' + d.director : '') + ' · ' + Math.floor(drainFraction(d) * 100) + '%' })
        ]),
        bar(drainFraction(d), kind),
        h('div', { cls: 'figures', text: figures.join(' · ') })
      ]);
    });
    if (rows.length === 0) rows = [h('p', { cls: 'muted', text: 'No drain or failover yet. Start one with: anchor ctl drain NODE' })];
    $('drains').replaceChildren.apply($('drains'), rows);
  }

  function sumValues(o) {
    return Object.keys(o || {}).reduce(function (a, k) { return a + num(o[k]); }, 0);
  }
  var SERIES = [
    { key: 'admissions', label: 'admissions' },
    { key: 'forwarded', label: 'forwarded' },
    { key: 'rejects', label: 'rejects' }
  ];
  function addSample(s) {
    if (!s || typeof s.time_ms !== 'number') return;
    var last = samples[samples.length - 1];
    if (last && s.time_ms <= last.t) return;
    samples.push({ t: s.time_ms, admissions: num(s.admissions_total), forwarded: num(s.client_datagrams_forwarded_total), rejects: sumValues(s.rejects_sent_total) });
    while (samples.length > 2 && samples[0].t < s.time_ms - WINDOW_MS - 2 * POLL_MS) samples.shift();
  }
  function rates() {
    var out = [];
    for (var i = 1; i < samples.length; i++) {
      var a = samples[i - 1], b = samples[i], dt = (b.t - a.t) / 1000;
      if (dt <= 0) continue;
      var p = { t: b.t };
      var restarted = false;
      SERIES.forEach(function (s) {
        var d = b[s.key] - a[s.key];
        if (d < 0) restarted = true;
        p[s.key] = d / dt;
      });
      if (!restarted) out.push(p);
    }
    return out;
  }
  function niceMax(v) {
    if (v <= 1) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= v) return steps[i] * p;
    return 10 * p;
  }
  function renderChart() {
    var chart = $('chart');
    // Drawn in CSS pixels (the view box follows the element's width), so that text keeps its size.
    var W = Math.max(300, Math.round(chart.getBoundingClientRect().width) || 640), H = 180, L = 48, R = 8, T = 10, B = 22;
    chart.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    var pts = rates();
    var nodes = [];
    var max = niceMax(Math.max.apply(null, [0].concat(pts.map(function (p) { return Math.max(p.admissions, p.forwarded, p.rejects); }))));
    var now = samples.length > 0 ? samples[samples.length - 1].t : 0;
    // The time axis grows with the page's history: one minute at first, up to WINDOW_MS.
    var span = samples.length > 0 ? Math.min(WINDOW_MS, Math.max(60000, now - samples[0].t)) : WINDOW_MS;
    var x = function (t) { return L + (W - L - R) * (1 - (now - t) / span); };
    var y = function (v) { return T + (H - T - B) * (1 - v / max); };
    [0, 0.5, 1].forEach(function (f) {
      nodes.push(svg('line', { x1: L, x2: W - R, y1: y(max * f), y2: y(max * f), class: 'grid' }));
      nodes.push(svg('text', { x: L - 6, y: y(max * f) + 4, 'text-anchor': 'end' }, String(Math.round(max * f * 10) / 10)));
    });
    nodes.push(svg('text', { x: L, y: H - 6 }, '-' + duration(span / 1000)));
    nodes.push(svg('text', { x: W - R, y: H - 6, 'text-anchor': 'end' }, 'now'));
    if (pts.length < 2) {
      nodes.push(svg('text', { x: (W + L) / 2, y: H / 2, 'text-anchor': 'middle' }, 'collecting…'));
    } else {
      SERIES.forEach(function (s) {
        var points = pts.filter(function (p) { return now - p.t <= span; })
          .map(function (p) { return x(p.t).toFixed(1) + ',' + y(p[s.key]).toFixed(1); }).join(' ');
        nodes.push(svg('polyline', { points: points, class: 'series s-' + s.key, 'data-series': s.key }));
      });
    }
    chart.replaceChildren.apply(chart, nodes);
    chart.setAttribute('data-points', String(pts.length));
    var latest = pts[pts.length - 1];
    $('legend').replaceChildren.apply($('legend'), SERIES.map(function (s) {
      return h('span', { 'data-series': s.key }, [h('span', { cls: 'swatch s-' + s.key }), s.label + ' ' + (latest ? latest[s.key].toFixed(1) : '-') + '/s']);
    }));
  }

  function renderAudit(items) {
    var rows = items.slice().reverse().map(function (l) {
      var versions = l.from_version === null && l.to_version === null ? '' : (l.from_version === null ? '-' : l.from_version) + ' → ' + l.to_version;
      var owners = l.from_owner === null && l.to_owner === null ? '' : (l.from_owner || '-') + ' → ' + (l.to_owner || '-');
      var session = l.session === null ? '(director)' : String(l.session);
      return h('tr', { 'data-seq': l.seq }, [
        h('td', { text: clock(l.time) }),
        h('td', { text: l.event }),
        h('td', { cls: 'mono', title: session, text: session.length > 12 ? session.slice(0, 12) + '…' : session }),
        h('td', { text: versions }),
        h('td', { text: owners }),
        h('td', { text: l.cause }),
        h('td', { text: l.actor })
      ]);
    });
    if (rows.length === 0) rows = [h('tr', {}, [h('td', { colspan: 7, cls: 'muted', text: 'No audit event yet.' })])];
    $('audit').replaceChildren.apply($('audit'), rows);
  }

  async function poll() {
    try {
      var r = await Promise.all([getJson('/readyz'), getJson('/v1/nodes'), getJson('/v1/drains'), getJson('/v1/audit?limit=' + AUDIT_ROWS), getJson('/v1/stats')]);
      var failed = r.slice(1).filter(function (x) { return !x.ok; })[0];
      if (failed) throw new Error(refusal(failed));
      addSample(r[4].body);
      renderReady(r[0].body, r[4].body);
      renderNodes(r[1].body.items || []);
      renderDrains(r[2].body.items || []);
      renderAudit(r[3].body.items || []);
      renderChart();
      banner(null);
    } catch (e) {
      var msg = e && e.message ? e.message : String(e);
      banner(e instanceof TypeError ? 'The director cannot be reached (' + msg + ')' : msg);
    } finally {
      polls++;
      document.body.setAttribute('data-polls', String(polls));
      setTimeout(poll, POLL_MS);
    }
  }
  poll();
})();
`;

const BODY = `<header>
<h1>Anchor <span id="director" class="muted"></span></h1>
<span id="ready" class="pill">…</span>
<span id="updated" class="muted"></span>
</header>
<div id="banner" class="banner" role="alert" hidden></div>
<main>
<section><h2>Nodes <span id="nodes-total" class="muted"></span></h2><div id="nodes"></div></section>
<section><h2>Drains <span id="drains-count" class="muted"></span></h2><div id="drains"></div></section>
<section class="wide"><h2>Traffic <span class="muted">per second, since this page was opened (up to 5 minutes)</span></h2>
<svg id="chart" viewBox="0 0 640 180" role="img" aria-label="admissions, forwarded datagrams and rejects per second"></svg>
<div id="legend" class="legend"></div></section>
<section class="wide"><h2>Latest audit events</h2>
<table><thead><tr><th>time</th><th>event</th><th>session</th><th>version</th><th>owner</th><th>cause</th><th>actor</th></tr></thead><tbody id="audit"></tbody></table></section>
</main>`;

function cspHash(text: string): string {
  return `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
}

export interface StatusPage {
  readonly html: string;
  readonly headers: Readonly<Record<string, string>>;
}

/** Builds the page and the headers to serve it with (it depends on nothing in the request). */
export function buildStatusPage(): StatusPage {
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Anchor status</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
${BODY}
<script>${SCRIPT}</script>
</body>
</html>
`;
  const csp = [
    "default-src 'none'",
    `script-src ${cspHash(SCRIPT)}`,
    `style-src ${cspHash(STYLE)}`,
    "connect-src 'self'",
    'img-src data:',
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  return {
    html,
    headers: {
      'content-type': 'text/html; charset=utf-8',
      'content-length': String(Buffer.byteLength(html)),
      'content-security-policy': csp,
      'cache-control': 'no-store',
      // The page's URL may carry the token: never send it on as a Referer.
      'referrer-policy': 'no-referrer',
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'DENY',
    },
  };
}

const PAGE = buildStatusPage();

/** The page, built once at load. */
export function statusPage(): StatusPage {
  return PAGE;
}
