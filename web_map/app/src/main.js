// The command wall: boots the map from the catalogue, then wires the panels and the live feed.
// Test and bench hooks: window.map (the MapLibre map) and window.__wall (state and errors).
import * as maplibregl from '../vendor/maplibre-gl/maplibre-gl.mjs';
import { getJSON, installedPaths } from './api.js';
import { buildStyle, LIVE_ALARMS, mapLayerIds, sourceTiles, vectorSources } from './wall_style.js';
import { buildLayerPanel } from './layer_panel.js';
import { connectLiveFeed } from './live_feed.js';
import { renderFigures } from './figures_panel.js';
import { featuresAt, showFeature } from './inspector.js';
import { bindSearch } from './search.js';
import { addOrthophotos } from './orthophotos.js';
import { addAnswerLayers, Planner } from './planner.js';
import { ReviewDesk } from './review_desk.js';
import { warmUpShaders } from './shader_warmup.js';
import { startCitizenReports } from './citizen_reports.js';

const RECENT_ALARMS = 6;
// The union of all components repeats what the class layers show; it starts hidden (unless the
// page is opened with ?all-layers, as the smoothness bench does).
const INITIALLY_HIDDEN = new Set(new URLSearchParams(location.search).has('all-layers') ? [] : ['components']);
const $ = (selector) => document.querySelector(selector);

const wall = window.__wall = { idle: false, errors: [], figures: null, figureUpdates: 0, alarmUpdates: 0, overdueCases: null,
  reviewCount: null, live: 'connecting', tileVersion: 0 };

const [catalogue, paths] = await Promise.all([getJSON('/catalogue'), installedPaths()]);
const layerById = Object.fromEntries(catalogue.layers.map((l) => [l.id, l]));
const districtNames = Object.fromEntries(catalogue.districts.map((d) => [d.code, d.name]));

const rem = parseFloat(getComputedStyle(document.documentElement).fontSize);
const map = window.map = new maplibregl.Map({
  container: 'map', style: buildStyle(catalogue, location.origin, INITIALLY_HIDDEN), bounds: catalogue.extent.bbox,
  fitBoundsOptions: { padding: { top: 2 * rem, bottom: 5 * rem, left: 2 * rem, right: 2 * rem } },
  attributionControl: false, fadeDuration: 0, maxPitch: 60, hash: false,
});
map.on('error', (e) => wall.errors.push(String(e.error?.message ?? e.error ?? e)));
map.addControl(new maplibregl.NavigationControl({ visualizePitch: true }), 'bottom-right');
map.addControl(new maplibregl.ScaleControl({ unit: 'metric' }), 'bottom-right');

let recentAlarms = [];
let mapReady = false;   // the style's sources exist (set in 'load')
const redrawFigures = () => wall.figures && renderFigures($('#figures-panel'), wall.figures, wall.reviewCount, recentAlarms);

async function refreshAlarms() {
  const alarms = await getJSON('/live/alarms');
  map.getSource(LIVE_ALARMS).setData(alarms);
  recentAlarms = alarms.features.slice(0, RECENT_ALARMS).map((f) => f.properties);
  wall.alarmUpdates += 1;
  redrawFigures();
}

// Overdue cases (督办) blink on the map, the most recently late first: HTML markers blinking in CSS (an animated map layer would
// keep the map from ever being idle), refetched from /live/overdue-cases when cases change.
const OVERDUE_MARKERS_MAX = 500;
const overdueMarkers = new Map();
async function refreshOverdue() {
  const cases = await getJSON('/live/overdue-cases');
  const shown = cases.features.slice(0, OVERDUE_MARKERS_MAX);
  const keep = new Set(shown.map((f) => f.id));
  for (const [id, marker] of overdueMarkers) if (!keep.has(id)) { marker.remove(); overdueMarkers.delete(id); }
  for (const f of shown) {
    if (overdueMarkers.has(f.id)) continue;
    const p = f.properties;
    const element = Object.assign(document.createElement('div'), {
      className: 'overdue-case', title: `${p.case_no} ${p.class_name ?? ''} · ${p.unit ?? ''} · 超时 overdue` });
    element.dataset.caseNo = p.case_no;
    overdueMarkers.set(f.id, new maplibregl.Marker({ element }).setLngLat(f.geometry.coordinates).addTo(map));
  }
  wall.overdueCases = cases.features.map((f) => f.properties.case_no);
}

// The vector sources (a few dataset-tile sources, see wall_style.js) and which of their layers are
// switched off: a source asks only for its visible layers.
const sources = vectorSources(catalogue);
const hidden = new Set(INITIALLY_HIDDEN);
function setSourceTiles(sourceId) {
  const visible = sources[sourceId].filter((l) => !hidden.has(l.id)).map((l) => l.id);
  if (visible.length) map.getSource(sourceId)?.setTiles(sourceTiles(location.origin, visible, `&v=${wall.tileVersion}`));
}

// A write reported by the feed: reload the tiles of every source with a layer that reads the changed
// tables ('*': the feed reconnected and anything may have changed).
function refreshLayers(tables) {
  const changed = (table) => tables.includes('*') || tables.includes(table);
  if (changed('city.alarm') && mapReady) refreshAlarms();
  if (changed('city.case_file') && mapReady) refreshOverdue();
  if (!mapReady) return;
  wall.tileVersion += 1;
  for (const [sourceId, layers] of Object.entries(sources)) {
    if (layers.some((layer) => layer.tables.some(changed))) setSourceTiles(sourceId);
  }
}

function onToggle(layer, visible) {
  if (visible) hidden.delete(layer.id); else hidden.add(layer.id);
  const sourceId = Object.keys(sources).find((id) => sources[id].includes(layer));
  // Switching a layer on asks its source for it; switching one off keeps the tiles it has.
  if (sourceId && visible) setSourceTiles(sourceId);
}

const desk = new ReviewDesk($('#review-desk'), map, maplibregl, paths, (count) => { wall.reviewCount = count; redrawFigures(); });
const planner = new Planner($('#planner'), map, catalogue);
let mode = 'inspect';
$('#modes').addEventListener('click', (e) => {
  const button = e.target.closest('button[data-mode]');
  if (!button) return;
  mode = button.dataset.mode;
  for (const b of $('#modes').querySelectorAll('button')) b.classList.toggle('active', b === button);
  $('#planner').hidden = mode !== 'planner';
  if (mode === 'review') desk.open(); else desk.close();
});

const clickable = catalogue.layers.flatMap((l) => mapLayerIds(l).filter((id) => !/__(halo|glow|underlay)$/.test(id)));
map.on('click', (e) => {
  if (mode === 'planner') return planner.ask(e);
  // Boundary linework (below a layer's linework_below) carries no properties: nothing to show.
  const feature = featuresAt(map, e.point, clickable).find((f) => Object.keys(f.properties).length);
  if (feature) showFeature($('#inspector'), feature, layerById[feature.layer.id.split('__')[0]], districtNames);
});

map.on('load', async () => {
  mapReady = true;
  // Rasters go above the district tint and under every other vector layer.
  const firstVector = map.getStyle().layers.find((l) => l.type !== 'background' && !l.id.endsWith('__underlay'))?.id;
  await addOrthophotos(map, $('#ortho-list'), firstVector);
  addAnswerLayers(map);
  for (const d of catalogue.districts) {
    const label = Object.assign(document.createElement('div'), { className: 'district-label', textContent: d.name });
    new maplibregl.Marker({ element: label }).setLngLat(d.label_point).addTo(map);
  }
  buildLayerPanel($('#layer-groups'), map, catalogue, INITIALLY_HIDDEN, onToggle);
  await Promise.all([refreshAlarms(), refreshOverdue()]);
  startCitizenReports(map, paths);
  await warmUpShaders(map);
  map.once('idle', () => { wall.idle = true; });
});

connectLiveFeed({
  onFigures: (figures) => { wall.figures = figures; wall.figureUpdates += 1; redrawFigures(); },
  onChange: refreshLayers,
  onStatus: (status) => {
    wall.live = status;
    $('#live-dot').dataset.status = status;
    $('#live-label').textContent = { live: '实时 LIVE', reconnecting: '重连中 reconnecting', closed: '已断开 offline' }[status];
  },
});
bindSearch($('#search'), map);
desk.refresh();

const tick = () => { $('#clock').textContent = new Date().toLocaleString('zh-CN', { hour12: false }); };
tick();
setInterval(tick, 1000);
