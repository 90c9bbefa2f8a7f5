// The dashboard on the admin page: live figures for the operator (meetings and participants
// per node and shard and per organisation, forwarding rates, poor connections, database
// size) and usage over time, plotted as SVG bars drawn here, with a CSV download. It
// refreshes itself every few seconds while it is on the page.

import { api } from './api.js';
import { h } from './dom.js';
import { formatDate, language, t } from './i18n.js';

/**
 * @typedef {{start: number, meetings: number, participant_minutes: number, peak_participants: number}} Bucket
 * @typedef {{org_id: string | null, bucket: 'hour' | 'day', from: number, to: number, buckets: Bucket[]}} Series
 * @typedef {{shard: number, rooms: number, participants: number, forwarded_packets: number,
 *   forwarded_bytes: number, graded_participants: number, poor_participants: number}} Shard
 * @typedef {{at: number,
 *   nodes: {name: string, rooms: number, participants: number, shards: Shard[]}[],
 *   orgs: {org_id: string, meetings: number, participants: number}[],
 *   forwarding: {packets_total: number, bytes_total: number, packets_per_sec: number | null, bytes_per_sec: number | null},
 *   quality: {graded: number, poor: number, poor_share: number | null},
 *   storage: {backend: string, database_bytes: number}}} Live
 */

/** How often the dashboard asks the server again. */
const REFRESH_MS = 5000;
const METRICS = /** @type {const} */ (['meetings', 'participant_minutes', 'peak_participants']);
const SVG = 'http://www.w3.org/2000/svg';
/** Plot geometry, in SVG user units (the element scales to its box). */
const W = 640;
const H = 180;
const PAD = { left: 48, right: 8, top: 10, bottom: 28 };

/**
 * An SVG element.
 * @param {string} tag
 * @param {Record<string, string | number>} [attrs]
 * @param {...(Node | string)} children
 */
function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  el.append(...children);
  return el;
}

/**
 * A number in the user's language.
 * @param {number} n
 * @param {Intl.NumberFormatOptions} [options]
 */
function num(n, options) {
  return new Intl.NumberFormat(language(), options).format(n);
}

/** @param {number} bytes */
function size(bytes) {
  const units = /** @type {const} */ (['byte', 'kilobyte', 'megabyte', 'gigabyte', 'terabyte']);
  let i = 0;
  let v = bytes;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return num(v, { style: 'unit', unit: units[i], maximumFractionDigits: 1 });
}

/**
 * The start of a bucket as a short date (days) or date and hour (hours), in the user's
 * language and time zone.
 * @param {number} secs
 * @param {'hour' | 'day'} bucket
 */
function bucketLabel(secs, bucket) {
  return bucket === 'hour'
    ? formatDate(secs * 1000, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' })
    : formatDate(secs * 1000, { month: 'short', day: 'numeric' });
}

/**
 * A round upper bound for the y axis: 1, 2 or 5 times a power of ten.
 * @param {number} max
 */
function niceMax(max) {
  if (max <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  return [1, 2, 5, 10].map(m => m * p).find(m => m >= max) ?? 10 * p;
}

/**
 * One metric of a series as a bar chart with axes: y from 0 to a round maximum, a label at
 * the start, middle and end of the x axis, and each bar's value in its tooltip.
 * @param {Series} series
 * @param {typeof METRICS[number]} metric
 */
export function plot(series, metric) {
  const values = series.buckets.map(b => b[metric]);
  const top = niceMax(Math.max(0, ...values));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const step = plotW / Math.max(1, values.length);
  const y = (/** @type {number} */ v) => PAD.top + plotH - (v / top) * plotH;
  const title = t(`dashboard.metric.${metric}`);
  const first = series.buckets[0];
  const last = series.buckets[series.buckets.length - 1];
  const chart = svg('svg', {
    class: 'usage-plot', viewBox: `0 0 ${W} ${H}`, role: 'img', 'data-metric': metric,
    'aria-label': first && last
      ? t('dashboard.plot_label', { metric: title, from: bucketLabel(first.start, series.bucket), to: bucketLabel(last.start, series.bucket) })
      : title,
  });
  // Axes and gridlines.
  for (const v of [0, top / 2, top]) {
    chart.append(
      svg('line', { class: 'grid', x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }),
      svg('text', { class: 'tick', x: PAD.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, num(v)));
  }
  chart.append(svg('line', { class: 'axis', x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: PAD.top + plotH }));
  series.buckets.forEach((b, i) => {
    const v = b[metric];
    const height = PAD.top + plotH - y(v);
    const bar = svg('rect', {
      class: 'bar', x: PAD.left + i * step + step * 0.1, width: Math.max(1, step * 0.8),
      y: y(v), height, 'data-value': v,
    });
    bar.append(svg('title', {}, `${bucketLabel(b.start, series.bucket)}: ${num(v)}`));
    chart.append(bar);
  });
  const n = series.buckets.length;
  for (const i of n > 2 ? [0, Math.floor(n / 2), n - 1] : [...Array(n).keys()]) {
    const anchor = i === 0 ? 'start' : i === n - 1 ? 'end' : 'middle';
    const x = i === 0 ? PAD.left : i === n - 1 ? W - PAD.right : PAD.left + (i + 0.5) * step;
    chart.append(svg('text', { class: 'tick', x, y: H - 8, 'text-anchor': anchor }, bucketLabel(series.buckets[i].start, series.bucket)));
  }
  return h('figure', { class: 'usage-figure' }, h('figcaption', { text: title }), chart);
}

/**
 * A labelled figure.
 * @param {string} label
 * @param {string} value
 * @param {string} [id]
 */
function figure(label, value, id) {
  return h('div', { class: 'dash-figure', id }, h('span', { class: 'muted', text: label }), h('strong', { text: value }));
}

/**
 * @param {Live} live
 * @param {(id: string) => string} orgName
 */
function liveView(live, orgName) {
  const rooms = live.nodes.reduce((s, n) => s + n.rooms, 0);
  const people = live.nodes.reduce((s, n) => s + n.participants, 0);
  const f = live.forwarding;
  const q = live.quality;
  const figures = h('div', { class: 'dash-figures' },
    figure(t('dashboard.rooms'), num(rooms), 'live-rooms'),
    figure(t('dashboard.participants'), num(people), 'live-participants'),
    figure(t('dashboard.packets'), f.packets_per_sec === null ? t('dashboard.measuring') : t('dashboard.per_second', { n: num(Math.round(f.packets_per_sec)) })),
    figure(t('dashboard.bitrate'), f.bytes_per_sec === null ? t('dashboard.measuring') : num(f.bytes_per_sec * 8 / 1e6, { style: 'unit', unit: 'megabit-per-second', maximumFractionDigits: 2 })),
    figure(t('dashboard.poor'), q.poor_share === null ? t('dashboard.none_graded') : t('dashboard.poor_share', { share: num(q.poor_share, { style: 'percent' }), count: q.graded }), 'live-quality'),
    figure(t('dashboard.storage'), size(live.storage.database_bytes), 'live-storage'));
  const shards = live.nodes.flatMap(n => n.shards.map(s => [n.name, num(s.shard), num(s.rooms), num(s.participants),
    s.graded_participants ? num(s.poor_participants / s.graded_participants, { style: 'percent' }) : '—']));
  return h('div', { class: 'stack' }, figures,
    table('shards-table', [t('dashboard.node'), t('dashboard.shard'), t('dashboard.rooms'), t('dashboard.participants'), t('dashboard.poor')], shards),
    live.orgs.length
      ? table('live-orgs-table', [t('admin.organisation'), t('dashboard.meetings'), t('dashboard.participants')],
        live.orgs.map(o => [orgName(o.org_id), num(o.meetings), num(o.participants)]))
      : h('p', { class: 'muted', text: t('dashboard.nobody') }));
}

/**
 * @param {string} id
 * @param {string[]} head
 * @param {string[][]} rows
 */
function table(id, head, rows) {
  return h('table', { class: 'admin-table', id },
    h('thead', {}, h('tr', {}, ...head.map(c => h('th', { text: c })))),
    h('tbody', {}, ...rows.map(r => h('tr', {}, ...r.map(c => h('td', { text: c }))))));
}

/**
 * The dashboard section. The operator sees the live figures and may pick an organisation;
 * an organisation's admin sees that organisation's usage.
 * @param {{operator: true, orgs: {id: string, name: string}[]} | {operator: false, org: string}} scope
 */
export function dashboardSection(scope) {
  const names = new Map(scope.operator ? scope.orgs.map(o => [o.id, o.name]) : []);
  /** @param {string} id */
  const orgName = id => names.get(id) ?? id;
  const bucket = h('select', { id: 'usage-bucket', 'aria-label': t('dashboard.bucket') },
    h('option', { value: 'day', text: t('dashboard.by_day') }),
    h('option', { value: 'hour', text: t('dashboard.by_hour') }));
  const org = scope.operator
    ? h('select', { id: 'usage-org', 'aria-label': t('admin.organisation') },
      h('option', { value: '', text: t('dashboard.all_orgs') }),
      ...scope.orgs.map(o => h('option', { value: o.id, text: o.name })))
    : null;
  const csv = h('a', { id: 'usage-csv', class: 'button', download: '', text: t('dashboard.csv') });
  const plots = h('div', { id: 'usage-plots', class: 'usage-plots' });
  const live = h('div', { id: 'dashboard-live' });
  const updated = h('p', { class: 'muted', id: 'dashboard-updated' });
  const section = h('section', { class: 'card stack', id: 'dashboard' },
    h('h2', { text: t('dashboard.title') }),
    ...(scope.operator ? [h('h3', { text: t('dashboard.live') }), live] : []),
    h('h3', { text: t('dashboard.usage') }),
    h('div', { class: 'row' }, ...(org ? [org] : []), bucket, csv),
    plots, updated);

  const seriesPath = () => {
    const q = new URLSearchParams({ bucket: bucket.value });
    if (org?.value) q.set('org', org.value);
    return scope.operator ? `/admin/usage/series?${q}` : `/orgs/${scope.org}/usage/series?${q}`;
  };
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer;
  const refresh = async () => {
    clearTimeout(timer);
    // Gone from the page (it was drawn again, or the user left): stop asking.
    if (timer !== undefined && !section.isConnected) return;
    const path = seriesPath();
    try {
      const [series, now] = await Promise.all([
        /** @type {Promise<Series>} */ (api('GET', path)),
        scope.operator ? /** @type {Promise<Live>} */ (api('GET', '/admin/dashboard')) : Promise.resolve(null),
      ]);
      csv.setAttribute('href', `/api/v1${path}&format=csv`);
      plots.replaceChildren(...METRICS.map(m => plot(series, m)));
      if (now) live.replaceChildren(liveView(now, orgName));
      updated.textContent = t('dashboard.updated', { time: formatDate(Date.now(), { timeStyle: 'medium' }) });
    } catch {
      updated.textContent = t('dashboard.stale');
    }
    timer = setTimeout(() => void refresh(), REFRESH_MS);
  };
  bucket.addEventListener('change', () => void refresh());
  org?.addEventListener('change', () => void refresh());
  void refresh();
  return section;
}
