// Planner mode: spatial questions answered on the map, by the Features API's /queries endpoints:
// what is here (unit grid, community, street, district, responsible unit), which features of a
// layer lie within a distance, and where a layer leaves the gridded area uncovered (in view).
import { escapeHtml, getJSON } from './api.js';
import { sourceOf } from './wall_style.js';

const ANSWER_SOURCE = 'planner-answer';
const HIGHLIGHT = 'planner-highlight';
const EMPTY = { type: 'FeatureCollection', features: [] };
const CIRCLE_STEPS = 64;
const QUERIES = {
  locate: ({ lng, lat }) => `/queries/locate?lon=${lng}&lat=${lat}`,
  within: ({ lng, lat }, f) => `/queries/within/${encodeURIComponent(f.layer)}?lon=${lng}&lat=${lat}&distance_m=${f.distance}`,
  gaps: (_p, f, bbox) => `/queries/coverage-gaps/${encodeURIComponent(f.layer)}?distance_m=${f.distance}&bbox=${bbox.join(',')}`,
};

const table = (entries) => `<table>${entries.filter(([, v]) => v !== null && v !== undefined)
  .map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`).join('')}</table>`;

// A geodesic-enough circle (the distances are a few hundred metres) as a GeoJSON polygon.
function circle({ lng, lat }, metres) {
  const dLat = metres / 111320, dLng = dLat / Math.cos((lat * Math.PI) / 180);
  const ring = Array.from({ length: CIRCLE_STEPS + 1 }, (_, i) => {
    const a = (2 * Math.PI * i) / CIRCLE_STEPS;
    return [lng + dLng * Math.cos(a), lat + dLat * Math.sin(a)];
  });
  return { type: 'Feature', properties: {}, geometry: { type: 'Polygon', coordinates: [ring] } };
}

const ANSWER_LAYERS = ['planner-answer-fill', 'planner-answer-line', 'planner-answer-point'];

// The answer layers stay hidden while there is no answer: a visible layer, even over an empty
// source, costs MapLibre a pass of tile clipping masks on every frame.
export function addAnswerLayers(map) {
  const hidden = { visibility: 'none' };
  map.addSource(ANSWER_SOURCE, { type: 'geojson', data: EMPTY });
  map.addLayer({ id: ANSWER_LAYERS[0], type: 'fill', source: ANSWER_SOURCE, filter: ['==', ['geometry-type'], 'Polygon'],
    layout: hidden, paint: { 'fill-color': '#ffea00', 'fill-opacity': 0.18 } });
  map.addLayer({ id: ANSWER_LAYERS[1], type: 'line', source: ANSWER_SOURCE, layout: hidden, paint: { 'line-color': '#ffea00', 'line-width': 2 } });
  map.addLayer({ id: ANSWER_LAYERS[2], type: 'circle', source: ANSWER_SOURCE, filter: ['==', ['geometry-type'], 'Point'],
    layout: hidden, paint: { 'circle-color': '#ffea00', 'circle-radius': 5, 'circle-stroke-color': '#000', 'circle-stroke-width': 1 } });
}

export class Planner {
  constructor(panel, map, catalogue) {
    Object.assign(this, { panel, map, catalogue });
    const pointLayers = catalogue.layers.filter((l) => l.geometry_type === 'Point');
    panel.innerHTML = `<h2>规划分析 Planner</h2>
      <div class="tools"><label><input type="radio" name="tool" value="locate" checked> 此处归属 what is here</label>
      <label><input type="radio" name="tool" value="within"> 距离范围内 within distance</label>
      <label><input type="radio" name="tool" value="gaps"> 覆盖盲区 coverage gaps (in view)</label></div>
      <label>图层 layer <select name="layer">${pointLayers.map((l) => `<option value="${escapeHtml(l.id)}">${escapeHtml(l.title)}</option>`).join('')}</select></label>
      <label>距离 distance (m) <input name="distance" type="number" min="10" max="5000" value="300"></label>
      <p class="hint muted">在地图上点击 click the map</p><div class="answer" role="status"></div>`;
  }

  form() {
    return { tool: this.panel.querySelector('input[name=tool]:checked').value,
      layer: this.panel.querySelector('select[name=layer]').value,
      distance: Number(this.panel.querySelector('input[name=distance]').value) };
  }

  show(html, features = [], highlight = null) {
    this.panel.querySelector('.answer').innerHTML = html;
    this.map.getSource(ANSWER_SOURCE).setData({ type: 'FeatureCollection', features });
    for (const id of ANSWER_LAYERS) this.map.setLayoutProperty(id, 'visibility', features.length ? 'visible' : 'none');
    if (this.map.getLayer(HIGHLIGHT)) this.map.removeLayer(HIGHLIGHT);
    if (highlight) this.map.addLayer(highlight);
  }

  async ask(event) {
    const form = this.form();
    const bounds = this.map.getBounds().toArray().flat();
    const answer = await getJSON(QUERIES[form.tool](event.lngLat, form, bounds));
    const point = { type: 'Feature', properties: {}, geometry: { type: 'Point', coordinates: [event.lngLat.lng, event.lngLat.lat] } };
    if (form.tool === 'locate') {
      return this.show(table([['单元网格 grid', answer.bgcode], ['社区 community', answer.community_name],
        ['街道 street', answer.street_name], ['区县 district', answer.district_name],
        ['责任单位 unit', answer.responsible_unit_name ?? '—']]), [point]);
    }
    if (form.tool === 'within') return this.showWithin(answer, form, event.lngLat, point);
    return this.show(table([['网格 grids', answer.grids], ['盲区面积 uncovered m²', Math.round(answer.uncovered_m2)],
      ['盲区比例 uncovered %', answer.uncovered_pct.toFixed(1)]]), answer.features.filter((f) => f.geometry));
  }

  showWithin(answer, form, lngLat, point) {
    const layer = this.catalogue.layers.find((l) => l.id === form.layer);
    const ids = answer.features.map((f) => f.id);
    // Tiles carry the key as a property when the catalogue lists it, else as the feature id.
    const key = layer.properties.includes(layer.key) ? ['to-string', ['get', layer.key]] : ['to-string', ['id']];
    const highlight = { id: HIGHLIGHT, type: 'circle', source: sourceOf(layer), 'source-layer': layer.id, minzoom: layer.minzoom,
      filter: ['in', key, ['literal', ids]],
      paint: { 'circle-radius': 7, 'circle-color': 'rgba(0,0,0,0)', 'circle-stroke-color': '#ffea00', 'circle-stroke-width': 2 } };
    const nearest = answer.features.slice(0, 5).map((f) => [f.id, `${Math.round(f.distance_m)} m`]);
    this.show(`<p>${answer.count} 个 ${escapeHtml(layer.title)} 在 ${form.distance} m 内 within</p>${table(nearest)}`,
      [circle(lngLat, form.distance), point], layer.id === 'alarms' ? null : highlight);
  }
}
