// Builds the wall's MapLibre style from the layer catalogue (GET /catalogue): one vector source per
// layer, so a hidden layer costs no tile requests and a live update reloads only its own tiles.
// No `glyphs`: the map draws no text; names are HTML (district labels, panels), so nothing is fetched
// from a font server and the wall works offline.

const GROUP_ORDER = ['base', 'boundaries', 'enforcement', 'components', 'operations'];
const TYPE_ORDER = { fill: 0, line: 1, circle: 2 };
// A source's deepest zoom: deeper views overzoom its tiles instead of asking for more of them.
const SOURCE_MAXZOOM = 16;
export const BACKGROUND = '#040b16';
export const LIVE_ALARMS = 'alarms';     // drawn from the live GeoJSON feed instead of tiles
const DISTRICTS = 'districts';
const UNDERLAY = '__underlay';           // drawn first, right above the background

export function drawOrder(layers) {
  return [...layers].sort((a, b) => (TYPE_ORDER[a.style.type] - TYPE_ORDER[b.style.type])
    || (GROUP_ORDER.indexOf(a.group) - GROUP_ORDER.indexOf(b.group)));
}

function source(layer, origin) {
  if (layer.id === LIVE_ALARMS) {
    return { type: 'geojson', data: { type: 'FeatureCollection', features: [] }, promoteId: 'id' };   // filled from /live/alarms
  }
  return {
    type: 'vector', tiles: layer.tiles,
    minzoom: layer.lowzoom ? 0 : layer.minzoom,
    maxzoom: Math.max(layer.minzoom, Math.min(layer.maxzoom, SOURCE_MAXZOOM)),
  };
}

function styleLayers(layer) {
  const base = {
    id: layer.id, source: layer.id, type: layer.style.type,
    paint: layer.style.paint ?? {}, layout: layer.style.layout ?? {},
  };
  if (layer.id !== LIVE_ALARMS) base['source-layer'] = layer.id;
  if (layer.lowzoom) base.minzoom = layer.minzoom;       // below it the tile holds per-grid counts
  const extra = [];
  if (layer.id === DISTRICTS) {   // the wall's backdrop: districts tinted and their borders glowing
    extra.push({ id: `${layer.id}${UNDERLAY}`, source: layer.id, 'source-layer': layer.id, type: 'fill',
      paint: { 'fill-color': '#0a2a4a', 'fill-opacity': 0.45 } },
    { id: `${layer.id}__glow`, source: layer.id, 'source-layer': layer.id, type: 'line',
      paint: { 'line-color': '#00b0ff', 'line-width': 8, 'line-blur': 6, 'line-opacity': 0.35 } });
  }
  if (layer.id === LIVE_ALARMS) {
    extra.push({ id: `${layer.id}__halo`, source: layer.id, type: 'circle',
      paint: { 'circle-color': '#ff1744', 'circle-opacity': 0.22, 'circle-blur': 0.6,
        'circle-radius': ['interpolate', ['linear'], ['zoom'], 8, 9, 16, 22] } });
  }
  if (layer.lowzoom === 'count_per_grid') {
    const color = layer.style.paint?.['circle-color'];
    extra.push({ id: `${layer.id}__count`, source: layer.id, 'source-layer': layer.id, type: 'circle',
      maxzoom: layer.minzoom,
      paint: {
        'circle-color': typeof color === 'string' ? color : '#26c6da', 'circle-opacity': 0.35,
        'circle-radius': ['interpolate', ['linear'], ['sqrt', ['to-number', ['get', 'count'], 1]], 1, 1.5, 30, 9],
      } });
  }
  return [...extra, base];
}

// Map layer ids drawn for a catalogue layer (its own plus helpers such as counts and halos).
export const mapLayerIds = (layer) => styleLayers(layer).map((l) => l.id);

export function buildStyle(catalogue, origin) {
  const ordered = drawOrder(catalogue.layers);
  const styleLayerList = ordered.flatMap(styleLayers);
  const isUnderlay = (l) => l.id.endsWith(UNDERLAY);
  return {
    version: 8,
    name: 'cityops command wall',
    sources: Object.fromEntries(ordered.map((layer) => [layer.id, source(layer, origin)])),
    layers: [{ id: 'background', type: 'background', paint: { 'background-color': BACKGROUND } },
      ...styleLayerList.filter(isUnderlay), ...styleLayerList.filter((l) => !isUnderlay(l))],
  };
}
