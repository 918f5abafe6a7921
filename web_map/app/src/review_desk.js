// Review desk for enforcement (违建审核): the drone change candidates awaiting review, before/after
// orthophotos side by side at the same place (the after one as the detection registered it) with a fade,
// and confirm / dismiss with a note under a reviewer's key.
// Contract (drone review API): GET /drone/candidates?status=pending -> FeatureCollection
// (id, score, area_m2, height_gain_m, checks_passed, before_id, after_id, detection_id); POST /drone/candidates/{id}/confirm|dismiss {note}.
// Before that API exists the desk says so and stays empty.
import { escapeHtml, getJSON, postJSON } from './api.js';
import { rasterSource } from './orthophotos.js';
import { BACKGROUND } from './wall_style.js';

const QUEUE_PATH = '/drone/candidates';
const QUEUE_URL = `${QUEUE_PATH}?status=pending`;
const KEY_STORAGE = 'cityops.reviewerKey';

function bboxOf(feature) {
  const xs = [], ys = [];
  const walk = (c) => (typeof c[0] === 'number' ? (xs.push(c[0]), ys.push(c[1])) : c.forEach(walk));
  walk(feature.geometry.coordinates);
  return [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
}

// What the detector measured and ruled out, so the reviewer knows why the candidate is here.
function evidence(p) {
  const gain = p.height_gain_m == null ? '' : ` · 增高 +${Number(p.height_gain_m).toFixed(1)} m`;
  const checks = (p.checks_passed ?? []).length ? `<br><small class="muted">已排除 passed: ${escapeHtml(p.checks_passed.join(', '))}</small>` : '';
  return gain + checks;
}

// Tiles of the before flight, and of the after flight moved to where the detection's registration put it
// (GET /drone/detections/{id}/after/tiles/…): both views show the same ground, whatever the GNSS error was.
const beforeTiles = (p) => p.before_id == null ? null : `${location.origin}/orthophotos/${p.before_id}/tiles/WebMercatorQuad/{z}/{x}/{y}.png`;
const afterTiles = (p) => p.detection_id == null
  ? (p.after_id == null ? null : `${location.origin}/orthophotos/${p.after_id}/tiles/WebMercatorQuad/{z}/{x}/{y}.png`)
  : `${location.origin}/drone/detections/${p.detection_id}/after/tiles/WebMercatorQuad/{z}/{x}/{y}.png`;

function photoSource(tiles) {
  const source = rasterSource({ tiles: [tiles] });
  delete source.bounds;
  return source;
}

// A small map showing one flight with the candidate's outline on top; `overlay` (the registered after flight on
// the before map) fades in with the desk's slider, for a swipe-like look at the same place.
function compareMap(maplibregl, container, tiles, candidate, overlay = null) {
  const style = { version: 8, sources: {
    outline: { type: 'geojson', data: candidate } }, layers: [
    { id: 'background', type: 'background', paint: { 'background-color': BACKGROUND } },
    { id: 'outline', type: 'line', source: 'outline', paint: { 'line-color': '#ffea00', 'line-width': 2 } }] };
  if (tiles != null) {
    style.sources.photo = photoSource(tiles);
    style.layers.splice(1, 0, { id: 'photo', type: 'raster', source: 'photo' });
  }
  if (overlay != null) {
    style.sources.overlay = photoSource(overlay);
    style.layers.splice(style.layers.length - 1, 0, { id: 'overlay', type: 'raster', source: 'overlay',
      paint: { 'raster-opacity': 0 } });
  }
  return new maplibregl.Map({ container, style, bounds: bboxOf(candidate), fitBoundsOptions: { padding: 40 },
    attributionControl: false, fadeDuration: 0, interactive: true });
}

export class ReviewDesk {
  constructor(panel, map, maplibregl, installedPaths, onQueueChange) {
    Object.assign(this, { panel, map, maplibregl, onQueueChange, candidates: null, compare: [],
      available: installedPaths.has(QUEUE_PATH) });
  }

  async refresh() {
    this.candidates = this.available ? (await getJSON(QUEUE_URL)).features : null;
    this.onQueueChange(this.candidates === null ? null : this.candidates.length);
    if (!this.panel.hidden) this.render();
  }

  open() { this.panel.hidden = false; this.render(); }

  close() { this.panel.hidden = true; this.closeCompare(); }

  render() {
    if (this.candidates === null) {
      this.panel.innerHTML = `<h2>违建审核 Review desk</h2><p class="muted" data-state="unavailable">
        无人机变化检测审核队列尚未启用 — the drone review queue (${QUEUE_URL}) is not installed on this server.</p>`;
      return;
    }
    const key = sessionStorage.getItem(KEY_STORAGE) ?? '';
    this.panel.innerHTML = `<h2>违建审核 Review desk <small>${this.candidates.length} 待审 pending</small></h2>
      <label class="key">审核员密钥 reviewer key <input type="password" id="reviewer-key" value="${escapeHtml(key)}"></label>
      <ol class="queue">${this.candidates.map((c) => `<li data-id="${escapeHtml(c.id ?? c.properties.id)}">
        <b>#${escapeHtml(c.id ?? c.properties.id)}</b> 置信度 score ${Number(c.properties.score).toFixed(2)} ·
        ${Math.round(c.properties.area_m2)} m²${evidence(c.properties)}</li>`).join('') || '<li class="none">队列为空 queue empty</li>'}</ol>
      <div class="compare" hidden><div class="pair"><figure><figcaption>前 before</figcaption><div class="before"></div></figure>
        <figure><figcaption>后 after (已配准 registered)</figcaption><div class="after"></div></figure></div>
        <label class="overlay">前/后 叠加 fade before → after <input type="range" id="review-overlay" min="0" max="100" value="0"></label>
        <textarea id="review-note" placeholder="审核意见 note"></textarea>
        <div class="actions"><button data-decision="confirm" class="confirm">确认违建 Confirm</button>
        <button data-decision="dismiss">排除 Dismiss</button></div></div><p class="review-result" role="status"></p>`;
    this.panel.querySelector('#reviewer-key').addEventListener('change', (e) => sessionStorage.setItem(KEY_STORAGE, e.target.value));
    this.panel.querySelector('.queue').addEventListener('click', (e) => {
      const item = e.target.closest('li[data-id]');
      if (item) this.select(this.candidates.find((c) => String(c.id ?? c.properties.id) === item.dataset.id));
    });
    this.panel.querySelector('.actions').addEventListener('click', (e) => {
      if (e.target.dataset.decision) this.decide(e.target.dataset.decision);
    });
  }

  select(candidate) {
    this.selected = candidate;
    this.closeCompare();
    const compare = this.panel.querySelector('.compare');
    compare.hidden = false;
    const p = candidate.properties;
    this.compare = [compareMap(this.maplibregl, compare.querySelector('.before'), beforeTiles(p), candidate, afterTiles(p)),
      compareMap(this.maplibregl, compare.querySelector('.after'), afterTiles(p), candidate)];
    const fade = compare.querySelector('#review-overlay');
    fade.value = 0;
    fade.oninput = () => {
      const before = this.compare[0];
      if (before.getLayer('overlay')) before.setPaintProperty('overlay', 'raster-opacity', fade.value / 100);
    };
    // Panning one side pans the other, so the eye compares the same ground.
    const [a, b] = this.compare;
    const sync = (from, to) => from.on('move', (e) => { if (e.originalEvent) to.jumpTo({ center: from.getCenter(), zoom: from.getZoom() }); });
    sync(a, b); sync(b, a);
    this.map.fitBounds(bboxOf(candidate), { padding: 200, maxZoom: 17 });
  }

  closeCompare() {
    this.compare.forEach((m) => m.remove());
    this.compare = [];
  }

  async decide(decision) {
    const id = this.selected.id ?? this.selected.properties.id;
    const note = this.panel.querySelector('#review-note').value;
    let message, outcome = decision;
    try {
      await postJSON(`/drone/candidates/${encodeURIComponent(id)}/${decision}`, { note }, this.panel.querySelector('#reviewer-key').value);
      message = `#${id} ${decision === 'confirm' ? '已确认 confirmed' : '已排除 dismissed'}`;
      this.closeCompare();
      await this.refresh();
    } catch (error) {
      [message, outcome] = [`未能提交 not saved: ${error.message}`, 'error'];
    }
    const result = this.panel.querySelector('.review-result');
    result.textContent = message;
    result.dataset.outcome = outcome;
  }
}
