// Orthophotos, DSMs and change maps from city.orthophoto (GET /orthophotos) as raster layers under
// the vector layers; the list is empty until the drone pipeline writes some, and then they appear.
import { escapeHtml, getJSON } from './api.js';

const KIND_TITLES = { rgb: '正射影像 RGB', dsm: '数字表面 DSM', change: '变化图 change map' };
export const rasterLayerId = (photo) => `orthophoto-${photo.id}`;

export function rasterSource(photo) {
  return { type: 'raster', tiles: photo.tiles, tileSize: 256, bounds: photo.bbox, minzoom: 10, maxzoom: 22 };
}

// One entry of GET /orthophotos (a GeoJSON Feature: footprint, properties, an `item` tile-template link).
function photoOf(feature) {
  const xs = [], ys = [];
  const walk = (c) => (typeof c[0] === 'number' ? (xs.push(c[0]), ys.push(c[1])) : c.forEach(walk));
  walk(feature.geometry.coordinates);
  const template = feature.links.find((l) => l.rel === 'item').href;
  return { ...feature.properties, id: feature.id, tiles: [template],
    bbox: [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)] };
}

export async function addOrthophotos(map, container, beforeLayerId) {
  const photos = (await getJSON('/orthophotos')).features.map(photoOf);
  if (!photos.length) {
    container.innerHTML = '<p class="muted">暂无影像 no orthophotos yet</p>';
    return photos;
  }
  for (const photo of photos) {
    map.addSource(rasterLayerId(photo), rasterSource(photo));
    map.addLayer({ id: rasterLayerId(photo), type: 'raster', source: rasterLayerId(photo),
      layout: { visibility: photo.kind === 'rgb' ? 'visible' : 'none' } }, beforeLayerId);
  }
  container.innerHTML = photos.map((p) => `<label class="toggle"><input type="checkbox" data-photo="${p.id}"
    ${p.kind === 'rgb' ? 'checked' : ''}><span>${escapeHtml(KIND_TITLES[p.kind] ?? p.kind)} · ${escapeHtml(p.name)}
    <small>${escapeHtml(p.captured_on ?? '')}</small></span></label>`).join('');
  container.addEventListener('change', (e) => {
    const id = `orthophoto-${e.target.dataset.photo}`;
    if (map.getLayer(id)) map.setLayoutProperty(id, 'visibility', e.target.checked ? 'visible' : 'none');
  });
  return photos;
}
