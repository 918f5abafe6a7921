// Planner mode: spatial questions answered on the map. The answers come from the Features API's
// /queries endpoints (branch `features`); the paths live in QUERIES, the one place to adapt.
// Without them, "what is here" still answers from the unit grid drawn under the click and
// /grids/{bgcode}; the other tools say they are not available.
import { escapeHtml, getJSON } from './api.js';
import { featuresAt } from './inspector.js';

const QUERIES = {
  locate: ({ lng, lat }) => `/queries/locate?lon=${lng}&lat=${lat}`,
  within: ({ lng, lat }, form) => `/queries/within?collection=${encodeURIComponent(form.layer)}&lon=${lng}&lat=${lat}&distance=${form.distance}`,
  gaps: (_point, form) => `/queries/coverage-gaps?collection=${encodeURIComponent(form.layer)}&distance=${form.distance}`,
};
const ANSWER_SOURCE = 'planner-answer';
const EMPTY = { type: 'FeatureCollection', features: [] };

export function addAnswerLayers(map) {
  map.addSource(ANSWER_SOURCE, { type: 'geojson', data: EMPTY });
  map.addLayer({ id: 'planner-answer-fill', type: 'fill', source: ANSWER_SOURCE, filter: ['==', ['geometry-type'], 'Polygon'],
    paint: { 'fill-color': '#ffea00', 'fill-opacity': 0.18 } });
  map.addLayer({ id: 'planner-answer-line', type: 'line', source: ANSWER_SOURCE, paint: { 'line-color': '#ffea00', 'line-width': 2 } });
  map.addLayer({ id: 'planner-answer-point', type: 'circle', source: ANSWER_SOURCE, filter: ['==', ['geometry-type'], 'Point'],
    paint: { 'circle-color': '#ffea00', 'circle-radius': 5, 'circle-stroke-color': '#000', 'circle-stroke-width': 1 } });
}

export class Planner {
  constructor(panel, map, catalogue, installedPaths) {
    Object.assign(this, { panel, map, catalogue, installedPaths });
    const pointLayers = catalogue.layers.filter((l) => l.geometry_type === 'Point');
    panel.innerHTML = `<h2>规划分析 Planner</h2>
      <div class="tools"><label><input type="radio" name="tool" value="locate" checked> 此处归属 what is here</label>
      <label><input type="radio" name="tool" value="within"> 距离范围内 within distance</label>
      <label><input type="radio" name="tool" value="gaps"> 覆盖盲区 coverage gaps</label></div>
      <label>图层 layer <select name="layer">${pointLayers.map((l) => `<option value="${escapeHtml(l.id)}">${escapeHtml(l.title)}</option>`).join('')}</select></label>
      <label>距离 distance (m) <input name="distance" type="number" min="10" max="5000" value="300"></label>
      <p class="hint muted">在地图上点击 click the map</p><div class="answer" role="status"></div>`;
  }

  form() {
    return { tool: this.panel.querySelector('input[name=tool]:checked').value,
      layer: this.panel.querySelector('select[name=layer]').value,
      distance: Number(this.panel.querySelector('input[name=distance]').value) };
  }

  show(html, geojson = EMPTY) {
    this.panel.querySelector('.answer').innerHTML = html;
    this.map.getSource(ANSWER_SOURCE).setData(geojson);
  }

  async ask(event) {
    const form = this.form();
    const url = QUERIES[form.tool](event.lngLat, form);
    const answer = this.installedPaths.has(url.split('?')[0]) ? await getJSON(url) : null;
    if (answer === null && form.tool === 'locate') return this.locateFromGrid(event);
    if (answer === null) return this.show('<p class="muted">空间查询服务尚未启用 — /queries is not installed on this server.</p>');
    const features = answer.features ?? [];
    const rows = Object.entries(answer.properties ?? features[0]?.properties ?? {}).map(([k, v]) =>
      `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(typeof v === 'object' ? JSON.stringify(v) : v)}</td></tr>`).join('');
    this.show(`<p>${features.length} 个结果 results</p><table>${rows}</table>`, answer.type === 'FeatureCollection' ? answer : EMPTY);
  }

  async locateFromGrid(event) {
    const [grid] = featuresAt(this.map, event.point, ['unit_grids']);
    if (!grid) return this.show('<p class="muted">放大到网格层级 (z ≥ 13) 后点击 zoom in to the unit grids and click.</p>');
    const d = await getJSON(`/grids/${grid.properties.bgcode}`);
    this.show(`<table><tr><th>单元网格 grid</th><td>${escapeHtml(d.bgcode)}</td></tr>
      <tr><th>社区 community</th><td>${escapeHtml(d.community_name)}</td></tr><tr><th>街道 street</th><td>${escapeHtml(d.street_name)}</td></tr>
      <tr><th>区县 district</th><td>${escapeHtml(d.district_name)}</td></tr>
      <tr><th>责任单位 unit</th><td>${escapeHtml(d.responsible_unit_name ?? '—')}</td></tr></table>`,
    { type: 'FeatureCollection', features: [{ type: 'Feature', properties: {}, geometry: grid.geometry }] });
  }
}
