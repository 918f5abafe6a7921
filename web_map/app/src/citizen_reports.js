// Citizen reports (市民城管通) on the wall: today's reports, accepted, closed and satisfaction, the
// 15 items as bars (GET /reports/figures), and today's new reports as points that fade in (GET
// /open311/v2/requests.json — public locations only). Polled; shown only when the server has them.
import { escapeHtml, getJSON } from './api.js';

const POLL_MS = 30_000;
const FADE_MS = 2_000;
const SOURCE = 'citizen-reports';
const NEW_SOURCE = 'citizen-reports-new';
const fmt = (n) => (n ?? '—').toLocaleString('zh-CN');

function render(panel, figures) {
  const top = Math.max(1, ...figures.items_today.map((item) => item.reports));
  const satisfaction = figures.satisfaction === null ? '—' : `${Math.round(100 * figures.satisfaction)}%`;
  panel.innerHTML = `
    <h2>市民城管通 Citizen reports today</h2>
    <div class="triple">
      <div><b data-figure="reports-today">${fmt(figures.reports_today)}</b><small>上报 reports</small></div>
      <div><b data-figure="reports-accepted">${fmt(figures.accepted_today)}</b><small>受理 accepted</small></div>
      <div><b data-figure="reports-closed">${fmt(figures.closed_today)}</b><small>办结 closed</small></div>
    </div>
    <div class="rate">满意度 satisfaction (30 天) <b data-figure="reports-satisfaction">${satisfaction}</b></div>
    ${figures.items_today.map((item) => `<div class="bar-row"><span>${escapeHtml(item.service_name)}</span>
      <div class="bar"><i style="width:${Math.round((100 * item.reports) / top)}%"></i></div><b>${fmt(item.reports)}</b></div>`).join('')}`;
}

const asFeatures = (requests) => requests.map((r) => ({ type: 'Feature', id: Number(r.service_request_id),
  geometry: { type: 'Point', coordinates: [r.long, r.lat] }, properties: { service_code: r.service_code, status: r.status } }));

function addLayers(map) {
  const empty = { type: 'FeatureCollection', features: [] };
  map.addSource(SOURCE, { type: 'geojson', data: empty });
  map.addSource(NEW_SOURCE, { type: 'geojson', data: empty });
  const paint = { 'circle-radius': 5, 'circle-color': '#00e5ff', 'circle-stroke-color': '#ffffff', 'circle-stroke-width': 1 };
  map.addLayer({ id: SOURCE, type: 'circle', source: SOURCE, paint });
  map.addLayer({ id: NEW_SOURCE, type: 'circle', source: NEW_SOURCE,
    paint: { ...paint, 'circle-opacity': 0, 'circle-stroke-opacity': 0,
      'circle-opacity-transition': { duration: FADE_MS }, 'circle-stroke-opacity-transition': { duration: FADE_MS } } });
}

export async function startCitizenReports(map, paths) {
  if (!paths.has('/reports/figures')) return;
  document.head.append(Object.assign(document.createElement('link'), { rel: 'stylesheet', href: 'citizen_reports.css' }));
  const panel = Object.assign(document.createElement('aside'), { id: 'reports-panel', className: 'panel' });
  document.body.append(panel);
  addLayers(map);
  const shown = new Map();
  const poll = async () => {
    const today = new Date(); today.setHours(0, 0, 0, 0);
    const [figures, requests] = await Promise.all([getJSON('/reports/figures'),
      getJSON(`/open311/v2/requests.json?start_date=${encodeURIComponent(today.toISOString())}`)]);
    render(panel, figures);
    const fresh = asFeatures(requests).filter((f) => !shown.has(f.id));
    for (const feature of asFeatures(requests)) shown.set(feature.id, feature);
    if (!fresh.length) return;
    // The new points appear in their own layer, fading from transparent; then they join the others.
    map.setPaintProperty(NEW_SOURCE, 'circle-opacity', 0);
    map.setPaintProperty(NEW_SOURCE, 'circle-stroke-opacity', 0);
    map.getSource(NEW_SOURCE).setData({ type: 'FeatureCollection', features: fresh });
    requestAnimationFrame(() => {
      map.setPaintProperty(NEW_SOURCE, 'circle-opacity', 1);
      map.setPaintProperty(NEW_SOURCE, 'circle-stroke-opacity', 1);
    });
    setTimeout(() => map.getSource(SOURCE).setData({ type: 'FeatureCollection', features: [...shown.values()] }), FADE_MS);
  };
  await poll().catch((e) => console.warn('citizen reports', e));
  setInterval(() => poll().catch((e) => console.warn('citizen reports', e)), POLL_MS);
}
