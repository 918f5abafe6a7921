// The search box: component code (16 digits), unit grid code (15 digits) or a place name; picking a
// hit flies the map to it.
import { escapeHtml, getJSON } from './api.js';

const KIND_TITLES = { component: '部件', unit_grid: '网格', district: '区县', street: '街道', community: '社区' };

export function bindSearch(form, map) {
  const input = form.querySelector('input');
  const list = form.querySelector('ul');
  let hits = [];
  const fly = (hit) => {
    map.fitBounds(hit.bbox, { padding: 80, maxZoom: 17, duration: 1200 });
    list.hidden = true;
  };
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const q = input.value.trim();
    if (!q) return;
    hits = (await getJSON(`/search?q=${encodeURIComponent(q)}`)).hits;
    list.innerHTML = hits.length ? hits.map((h, i) => `<li data-i="${i}"><em>${KIND_TITLES[h.kind] ?? h.kind}</em>
      ${escapeHtml(h.name)} <small>${escapeHtml(h.code)} ${escapeHtml(h.detail ?? '')}</small></li>`).join('')
      : '<li class="none">无结果 no match</li>';
    list.hidden = false;
    if (hits.length === 1) fly(hits[0]);
  });
  list.addEventListener('click', (e) => {
    const item = e.target.closest('li[data-i]');
    if (item) fly(hits[Number(item.dataset.i)]);
  });
}
