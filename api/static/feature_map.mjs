// The small map of an HTML features page: the page's own features (fetched as GeoJSON from the
// URL in data-geojson) over the city's water and roads from the platform's vector tiles, and a
// button that copies the map view into the bbox field of the query form.
import * as maplibregl from '/map/vendor/maplibre-gl/maplibre-gl.mjs';

const element = document.getElementById('feature-map');
const COLOUR = '#e65100';

function extent(geojson) {
  let [w, s, e, n] = [Infinity, Infinity, -Infinity, -Infinity];
  const walk = (c) => {
    if (typeof c[0] === 'number') { w = Math.min(w, c[0]); s = Math.min(s, c[1]); e = Math.max(e, c[0]); n = Math.max(n, c[1]); }
    else c.forEach(walk);
  };
  for (const f of geojson.features ?? [geojson]) if (f.geometry) walk(f.geometry.coordinates);
  return Number.isFinite(w) ? [[w, s], [e, n]] : null;
}

async function show() {
  const response = await fetch(element.dataset.geojson, { headers: { Accept: 'application/geo+json' } });
  const geojson = await response.json();
  const tiles = `${location.origin}/tiles/WebMercatorQuad/{z}/{y}/{x}?collections=water,roads`;
  const map = new maplibregl.Map({
    container: element, attributionControl: false, fadeDuration: 0,
    style: {
      version: 8,
      sources: { city: { type: 'vector', tiles: [tiles], maxzoom: 16 }, features: { type: 'geojson', data: geojson } },
      layers: [
        { id: 'background', type: 'background', paint: { 'background-color': '#f4f6f8' } },
        { id: 'water', type: 'fill', source: 'city', 'source-layer': 'water', paint: { 'fill-color': '#a9cbe8' } },
        { id: 'roads', type: 'line', source: 'city', 'source-layer': 'roads', paint: { 'line-color': '#c3ccd5', 'line-width': 1 } },
        { id: 'areas', type: 'fill', source: 'features', filter: ['==', ['geometry-type'], 'Polygon'], paint: { 'fill-color': COLOUR, 'fill-opacity': 0.25 } },
        { id: 'lines', type: 'line', source: 'features', filter: ['!=', ['geometry-type'], 'Point'], paint: { 'line-color': COLOUR, 'line-width': 1.5 } },
        { id: 'points', type: 'circle', source: 'features', filter: ['==', ['geometry-type'], 'Point'],
          paint: { 'circle-color': COLOUR, 'circle-radius': 4, 'circle-stroke-color': '#ffffff', 'circle-stroke-width': 1 } },
      ],
    },
  });
  window.featureMap = map;
  const bounds = extent(geojson);
  if (bounds) map.fitBounds(bounds, { padding: 30, maxZoom: 17, duration: 0 });
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }));
  map.on('click', ['points', 'areas', 'lines'], (event) => {
    const [feature] = event.features;
    const id = feature?.id ?? feature?.properties?.[element.dataset.key];
    if (id !== undefined && element.dataset.items) location.href = `${element.dataset.items}/${encodeURIComponent(id)}?f=html`;
  });
  map.once('idle', () => { element.dataset.ready = 'true'; });
  const useView = document.getElementById('use-map-view');
  if (useView) {
    useView.hidden = false;
    useView.addEventListener('click', () => {
      const b = map.getBounds();
      document.getElementById('bbox').value = [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map((v) => v.toFixed(5)).join(',');
    });
  }
}

if (element) show().catch((error) => { element.textContent = `map unavailable: ${error}`; });
