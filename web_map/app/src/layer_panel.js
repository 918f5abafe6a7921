// The layer panel: catalogue layers by group, each with a toggle, an opacity slider and its legend.
import { escapeHtml } from './api.js';
import { legendHtml, firstColor } from './legend.js';
import { mapLayerIds } from './wall_style.js';

const GROUP_TITLES = {
  boundaries: '行政区划与网格 Boundaries', base: '基础地理 Base', components: '城市部件 Components',
  operations: '运行监测 Operations', enforcement: '执法 Enforcement',
};
const OPACITY_PROPERTIES = {
  fill: ['fill-opacity'], line: ['line-opacity'], circle: ['circle-opacity', 'circle-stroke-opacity'],
  raster: ['raster-opacity'],
};

// Scale each paint opacity of a map layer by `factor`, relative to the opacity its style gave it.
export function setOpacity(map, layerId, factor) {
  const layer = map.getLayer(layerId);
  if (!layer) return;
  const baseline = map.__baseOpacity ??= {};
  for (const property of OPACITY_PROPERTIES[layer.type] ?? []) {
    const key = `${layerId}/${property}`;
    if (!(key in baseline)) {
      const value = map.getPaintProperty(layerId, property);
      baseline[key] = typeof value === 'number' ? value : 1;
    }
    map.setPaintProperty(layerId, property, baseline[key] * factor);
  }
}

export function setVisible(map, layer, visible) {
  for (const id of mapLayerIds(layer)) map.setLayoutProperty(id, 'visibility', visible ? 'visible' : 'none');
}

// onToggle(layer, visible): called after a layer is switched on or off in the panel.
export function buildLayerPanel(container, map, catalogue, initiallyHidden, onToggle = () => {}) {
  const groups = Object.keys(GROUP_TITLES);
  container.innerHTML = groups.map((group) => {
    const rows = catalogue.layers.filter((l) => l.group === group).map((layer) => `
      <div class="layer-row" data-layer="${escapeHtml(layer.id)}">
        <label class="toggle"><input type="checkbox" ${initiallyHidden.has(layer.id) ? '' : 'checked'}>
          <i class="dot" style="--c:${escapeHtml(firstColor(layer))}"></i><span>${escapeHtml(layer.title)}</span></label>
        <input class="opacity" type="range" min="0" max="100" value="100" title="不透明度 opacity" aria-label="opacity of ${escapeHtml(layer.id)}">
        ${legendHtml(layer)}
      </div>`).join('');
    return rows && `<section class="layer-group"><h3>${escapeHtml(GROUP_TITLES[group])}</h3>${rows}</section>`;
  }).join('');
  for (const layer of catalogue.layers) {
    const row = container.querySelector(`[data-layer="${layer.id}"]`);
    row.querySelector('input[type=checkbox]').addEventListener('change', (e) => {
      setVisible(map, layer, e.target.checked);
      onToggle(layer, e.target.checked);
    });
    row.querySelector('.opacity').addEventListener('input', (e) => {
      for (const id of mapLayerIds(layer)) setOpacity(map, id, e.target.value / 100);
    });
    if (initiallyHidden.has(layer.id)) setVisible(map, layer, false);
  }
}
