// Compiles every WebGL program the wall's style needs before the wall reports ready.
//
// MapLibre compiles a program the first time it draws a layer whose paint configuration (which
// paint properties are data-driven) it has not drawn before, and the compile blocks the main thread
// inside that frame: ~0.8 s per program in software WebGL, tens of milliseconds on a wall's GPU.
// Layers with a minzoom are not drawn at the opening view, so the first zoom past z13 (stall sites
// and cases coloured by status) froze the animation. Mapbox GL compiles its programs up front for
// this reason (mapbox-gl-js commit a30ccc8); MapLibre has no such step. So the wall draws a copy of
// every style layer once, over tiny features placed just outside the canvas, inside a tile that is
// on screen: the draw calls happen and compile their programs, and the GPU clips every fragment.
// The copies are removed after that frame; the compiled programs stay cached in the painter.

import { MercatorCoordinate } from '../vendor/maplibre-gl/maplibre-gl.mjs';

const WARMUP = '__warmup';
const OUTSIDE_PX = 64;                      // wider than any circle radius, halo or line width
const GEOMETRY_OF_TYPE = { fill: 'Polygon', line: 'LineString', circle: 'Point' };

// A point OUTSIDE_PX beyond one edge of the canvas whose tile (at the zoom a 512 px source tile
// covers) also covers the canvas edge, so the tile is rendered; null if no edge qualifies.
function offscreenAnchor(map) {
  const { clientWidth: w, clientHeight: h } = map.getCanvas();
  const n = 2 ** Math.floor(map.getZoom());
  const tileOf = (point) => {
    const { x, y } = MercatorCoordinate.fromLngLat(map.unproject(point));
    return `${Math.floor(x * n)}/${Math.floor(y * n)}`;
  };
  const edges = [[[-OUTSIDE_PX, h / 2], [0, h / 2]], [[w + OUTSIDE_PX, h / 2], [w - 1, h / 2]],
    [[w / 2, -OUTSIDE_PX], [w / 2, 0]], [[w / 2, h + OUTSIDE_PX], [w / 2, h - 1]]];
  const edge = edges.find(([outside, inside]) => tileOf(outside) === tileOf(inside));
  return edge ? edge[0] : null;
}

function warmupFeatures(map, [x, y]) {
  const at = (dx, dy) => map.unproject([x + dx, y + dy]).toArray();
  const geometries = {
    Point: { type: 'Point', coordinates: at(0, 0) },
    LineString: { type: 'LineString', coordinates: [at(0, 0), at(2, 2)] },
    Polygon: { type: 'Polygon', coordinates: [[at(0, 0), at(2, 0), at(2, 2), at(0, 2), at(0, 0)]] },
  };
  return { type: 'FeatureCollection',
    features: Object.entries(geometries).map(([kind, geometry]) => ({ type: 'Feature', properties: { kind }, geometry })) };
}

// Resolves once every program of the current style has been compiled (or at once if no canvas edge
// can hide the copies, or if there is nothing to compile).
export function warmUpShaders(map) {
  const anchor = offscreenAnchor(map);
  const layers = map.getStyle().layers.filter((l) => GEOMETRY_OF_TYPE[l.type]);
  if (!anchor || !layers.length) return Promise.resolve();
  map.addSource(WARMUP, { type: 'geojson', data: warmupFeatures(map, anchor) });
  const copies = layers.map((l) => ({
    id: `${WARMUP}/${l.id}`, type: l.type, source: WARMUP, paint: l.paint ?? {}, layout: { ...l.layout, visibility: 'visible' },
    filter: ['==', ['get', 'kind'], GEOMETRY_OF_TYPE[l.type]],
  }));
  for (const copy of copies) map.addLayer(copy);
  return new Promise((resolve) => map.once('idle', () => {
    for (const copy of copies) map.removeLayer(copy.id);
    map.removeSource(WARMUP);
    resolve();
  }));
}
