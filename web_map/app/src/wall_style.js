// Builds the wall's MapLibre style from the layer catalogue (GET /catalogue).
// Two dataset-tile sources (`/tiles/WebMercatorQuad/{z}/{y}/{x}?collections=a,b,…`, every layer of
// the source in one MVT), split by how often their tables are written, so a tile position costs two
// requests, parses and uploads instead of one per layer (17), and a live write reloads only its half:
//   base – boundaries, grids, water, roads, buildings (rarely written)
//   live – components (sensor states), stall sites, cases, illegal buildings, drone change
//          candidates, and the union of all components (hidden unless switched on)
// and the open alarms as their own GeoJSON source (`GET /live/alarms`). A source asks only for its
// visible layers (`sourceTiles`), so a hidden layer costs no tile bytes.
// No `glyphs`: the map draws no text; names are HTML (district labels, panels), so nothing is fetched
// from a font server and the wall works offline.

const GROUP_ORDER = ['base', 'boundaries', 'enforcement', 'components', 'operations'];
const TYPE_ORDER = { fill: 0, line: 1, circle: 2 };
// Fills and lines are clipped to their tiles by stencil masks, which MapLibre draws again each time
// the next clipped layer comes from another source: so each source's fills and lines are drawn
// together (the city base, then enforcement above it), and the circles, which are not clipped, last.
const CLIPPED_SOURCE_ORDER = ['base', 'live'];
// A source's deepest zoom: deeper views overzoom its tiles instead of asking for more of them.
const SOURCE_MAXZOOM = 16;
export const BACKGROUND = '#040b16';
export const LIVE_ALARMS = 'alarms';     // drawn from the live GeoJSON feed instead of tiles
const DISTRICTS = 'districts';
const UNDERLAY = '__underlay';           // drawn first, right above the background

export function drawOrder(layers) {
  const clippedRank = (l) => (l.style.type === 'circle' ? CLIPPED_SOURCE_ORDER.length : Math.max(0, CLIPPED_SOURCE_ORDER.indexOf(sourceOf(l))));
  return [...layers].sort((a, b) => (clippedRank(a) - clippedRank(b)) || (TYPE_ORDER[a.style.type] - TYPE_ORDER[b.style.type])
    || (GROUP_ORDER.indexOf(a.group) - GROUP_ORDER.indexOf(b.group)));
}

const SOURCE_OF_GROUP = { boundaries: 'base', base: 'base' };

// The map source a catalogue layer is drawn from.
export function sourceOf(layer) {
  if (layer.id === LIVE_ALARMS) return LIVE_ALARMS;
  return SOURCE_OF_GROUP[layer.group] ?? 'live';
}

// The vector sources and the catalogue layers each one carries: { sourceId: [layer, …] }.
export function vectorSources(catalogue) {
  const sources = {};
  for (const layer of catalogue.layers) {
    if (layer.id !== LIVE_ALARMS) (sources[sourceOf(layer)] ??= []).push(layer);
  }
  return sources;
}

// The dataset-tile URL of a source carrying the given layer ids (`extra`: more query, e.g. v=3).
export function sourceTiles(origin, layerIds, extra = '') {
  return [`${origin}/tiles/WebMercatorQuad/{z}/{y}/{x}?collections=${layerIds.map(encodeURIComponent).join(',')}${extra}`];
}

function vectorSource(layers, origin, hidden) {
  return {
    type: 'vector', tiles: sourceTiles(origin, layers.filter((l) => !hidden.has(l.id)).map((l) => l.id)),
    minzoom: Math.min(...layers.map((l) => (l.lowzoom ? 0 : l.minzoom))),
    // Deeper views overzoom z16 tiles instead of asking for more of them.
    maxzoom: Math.max(...layers.map((l) => Math.max(l.minzoom, Math.min(l.maxzoom, SOURCE_MAXZOOM)))),
  };
}

function styleLayers(layer, hidden = new Set()) {
  const source = sourceOf(layer);
  const base = {
    id: layer.id, source, type: layer.style.type,
    paint: layer.style.paint ?? {}, layout: layer.style.layout ?? {},
  };
  if (layer.id !== LIVE_ALARMS) base['source-layer'] = layer.id;
  // Below its minzoom a layer has no features (or, with lowzoom, per-grid counts drawn by __count-*):
  // MapLibre then skips the layer altogether instead of evaluating it every frame.
  if (layer.minzoom > 0) base.minzoom = layer.minzoom;
  const extra = [];
  if (layer.id === DISTRICTS) {   // the wall's backdrop: districts tinted and their borders glowing
    extra.push({ id: `${layer.id}${UNDERLAY}`, source, 'source-layer': layer.id, type: 'fill',
      paint: { 'fill-color': '#0a2a4a', 'fill-opacity': 0.45 } },
    { id: `${layer.id}__glow`, source, 'source-layer': layer.id, type: 'line',
      paint: { 'line-color': '#00b0ff', 'line-width': 8, 'line-blur': 6, 'line-opacity': 0.35 } });
  }
  if (layer.id === LIVE_ALARMS) {
    extra.push({ id: `${layer.id}__halo`, source, type: 'circle',
      paint: { 'circle-color': '#ff1744', 'circle-opacity': 0.22, 'circle-blur': 0.6,
        'circle-radius': ['interpolate', ['linear'], ['zoom'], 8, 9, 16, 22] } });
  }
  // Per-grid count circles below minzoom: the catalogue's own style layers (GET /catalogue), the
  // same ones /styles/default/style.json draws for QGIS and OpenLayers.
  for (const counts of layer.count_styles ?? []) {
    extra.push({ ...counts, id: counts.id.replace('-counts-', '__count-'), source, 'source-layer': layer.id });
  }
  const layers = [...extra, base];
  return hidden.has(layer.id) ? layers.map((l) => ({ ...l, layout: { ...l.layout, visibility: 'none' } })) : layers;
}

// Map layer ids drawn for a catalogue layer (its own plus helpers such as counts and halos).
export const mapLayerIds = (layer) => styleLayers(layer).map((l) => l.id);

// The style; the layers in `hidden` start switched off, and their sources do not ask for them.
export function buildStyle(catalogue, origin, hidden = new Set()) {
  const ordered = drawOrder(catalogue.layers);
  const styleLayerList = ordered.flatMap((layer) => styleLayers(layer, hidden));
  const isUnderlay = (l) => l.id.endsWith(UNDERLAY);
  return {
    version: 8,
    name: 'cityops command wall',
    sources: {
      ...Object.fromEntries(Object.entries(vectorSources(catalogue)).map(([id, layers]) => [id, vectorSource(layers, origin, hidden)])),
      [LIVE_ALARMS]: { type: 'geojson', data: { type: 'FeatureCollection', features: [] }, promoteId: 'id' },  // filled from /live/alarms
    },
    layers: [{ id: 'background', type: 'background', paint: { 'background-color': BACKGROUND } },
      ...styleLayerList.filter(isUnderlay), ...styleLayerList.filter((l) => !isUnderlay(l))],
  };
}
