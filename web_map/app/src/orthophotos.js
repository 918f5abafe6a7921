// Imagery under the vector layers: the latest imagery as one layer (every RGB flight, newest on
// top, GET /collections/imagery/…/tilejson.json) with a day picker (the city as it was then), and
// each orthophoto, DSM and change map of city.orthophoto (GET /orthophotos) as its own layer,
// hidden until ticked. Empty until the drone pipeline writes some; then they appear.
import { ApiError, escapeHtml, getJSON } from './api.js';

const KIND_TITLES = { rgb: '正射影像 RGB', dsm: '数字表面 DSM', change: '变化图 change map' };
const MOSAIC_ID = 'imagery-latest';
const MOSAIC_TILEJSON = '/collections/imagery/map/tiles/WebMercatorQuad/tilejson.json';
export const rasterLayerId = (photo) => `orthophoto-${photo.id}`;

export function rasterSource(photo) {
  return { type: 'raster', tiles: photo.tiles, tileSize: 256, bounds: photo.bbox, minzoom: 10, maxzoom: 22 };
}

// One entry of GET /orthophotos (a GeoJSON Feature: footprint, bbox, an `item` tile-template link).
function photoOf(feature) {
  const template = feature.links.find((l) => l.rel === 'item').href;
  return { ...feature.properties, id: feature.id, tiles: [template], bbox: feature.bbox };
}

// The mosaic's source from its TileJSON (tiles, bounds, zooms), for the latest flights or a day.
async function mosaicSource(day) {
  const tilejson = await getJSON(day ? `${MOSAIC_TILEJSON}?datetime=${encodeURIComponent(day)}` : MOSAIC_TILEJSON);
  return { type: 'raster', tiles: tilejson.tiles, tileSize: 256, bounds: tilejson.bounds,
    minzoom: tilejson.minzoom, maxzoom: 22 };
}

function addMosaic(map, container, beforeLayerId, source) {
  map.addSource(MOSAIC_ID, source);
  map.addLayer({ id: MOSAIC_ID, type: 'raster', source: MOSAIC_ID }, beforeLayerId);
  container.insertAdjacentHTML('afterbegin', `<label class="toggle"><input type="checkbox" data-mosaic checked>
    <span>最新影像 latest imagery</span></label>
    <label class="toggle"><span>日期 as of</span> <input type="date" data-mosaic-day>
    <small data-mosaic-note class="muted"></small></label>`);
  container.querySelector('[data-mosaic-day]').addEventListener('change', async (e) => {
    const note = container.querySelector('[data-mosaic-note]');
    try {
      const next = await mosaicSource(e.target.value);
      map.getSource(MOSAIC_ID).setTiles(next.tiles);
      note.textContent = '';
    } catch (error) {
      // a day before the first flight: the server says so (404 with a reason)
      note.textContent = error instanceof ApiError ? error.message : String(error);
    }
  });
}

export async function addOrthophotos(map, container, beforeLayerId) {
  const photos = (await getJSON('/orthophotos')).features.map(photoOf);
  if (!photos.length) {
    container.innerHTML = '<p class="muted">暂无影像 no orthophotos yet</p>';
    return photos;
  }
  // oldest first, so each newer one is drawn above the older ones
  for (const photo of [...photos].reverse()) {
    map.addSource(rasterLayerId(photo), rasterSource(photo));
    map.addLayer({ id: rasterLayerId(photo), type: 'raster', source: rasterLayerId(photo),
      layout: { visibility: 'none' } }, beforeLayerId);
  }
  container.innerHTML = photos.map((p) => `<label class="toggle"><input type="checkbox" data-photo="${p.id}">
    <span>${escapeHtml(KIND_TITLES[p.kind] ?? p.kind)} · ${escapeHtml(p.name)}
    <small>${escapeHtml(p.captured_on ?? '')}</small></span></label>`).join('');
  if (photos.some((p) => p.kind === 'rgb')) {  // under every single orthophoto, so a ticked one shows above it
    addMosaic(map, container, rasterLayerId(photos[photos.length - 1]), await mosaicSource(null));
  }
  container.addEventListener('change', (e) => {
    const id = e.target.dataset.mosaic !== undefined ? MOSAIC_ID
      : e.target.dataset.photo ? `orthophoto-${e.target.dataset.photo}` : null;
    if (id && map.getLayer(id)) map.setLayoutProperty(id, 'visibility', e.target.checked ? 'visible' : 'none');
  });
  return photos;
}
