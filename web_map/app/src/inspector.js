// Click a feature: its attributes, its GB/T codes read part by part, and where a unit grid is
// known, the grid's community, street, district and responsible unit (责任单位) from /grids/{bgcode}.
import { escapeHtml, getJSON } from './api.js';
import { componentCode, gridCode } from './gbt_codes.js';

const CLICK_TOLERANCE_PX = 4;

const row = (name, value) => `<tr><th>${escapeHtml(name)}</th><td>${escapeHtml(value)}</td></tr>`;

function codeRows(props, districtNames) {
  const rows = [];
  const objcode = componentCode(props.objcode);
  if (objcode) {
    rows.push(row('部件编码 GB/T 30428.2', props.objcode),
      row('· 区县 county', `${objcode.county} ${districtNames[objcode.county] ?? ''}`),
      row('· 大类/小类 class', `${objcode.major} / ${objcode.minor}`), row('· 序号 serial', objcode.serial));
  }
  const grid = gridCode(props.bgcode);
  if (grid) {
    rows.push(row('单元网格 GB/T 30428.1', props.bgcode), row('· 街道 street code', grid.street),
      row('· 社区 community code', grid.community), row('· 网格序号 sequence', grid.sequence));
  }
  if (props.district_code) rows.push(row('区县 district (GB/T 2260)', `${props.district_code} ${districtNames[props.district_code] ?? ''}`));
  return rows.join('');
}

async function gridRows(bgcode) {
  if (!gridCode(bgcode)) return '';
  const grid = await getJSON(`/grids/${bgcode}`);
  return [
    row('社区 community', `${grid.community_name} (${grid.community_code})`),
    row('街道 street', `${grid.street_name} (${grid.street_code})`),
    row('区县 district', `${grid.district_name} (${grid.district_code})`),
    row('责任单位 responsible unit', grid.responsible_unit_name ? `${grid.responsible_unit_name} · ${grid.responsible_department}` : '未指定 none'),
    grid.responsible_phone ? row('电话 phone', grid.responsible_phone) : '',
  ].join('');
}

export function featuresAt(map, point, layerIds) {
  const box = [[point.x - CLICK_TOLERANCE_PX, point.y - CLICK_TOLERANCE_PX], [point.x + CLICK_TOLERANCE_PX, point.y + CLICK_TOLERANCE_PX]];
  return map.queryRenderedFeatures(box, { layers: layerIds.filter((id) => map.getLayer(id)) });
}

// Tiles below a layer's detail zoom carry only its key and what its style reads: the clicked
// feature's other attributes come from the Features API.
async function fullProperties(feature, layer) {
  const props = feature.properties;
  const key = props[layer?.key];
  if (!layer || key === undefined || layer.properties.every((p) => p in props)) return props;
  const item = await getJSON(`/collections/${encodeURIComponent(layer.id)}/items/${encodeURIComponent(key)}`);
  return { [layer.key]: key, ...item.properties };
}

export async function showFeature(panel, feature, layer, districtNames) {
  const props = await fullProperties(feature, layer);
  const plain = Object.entries(props).filter(([k]) => !['objcode', 'bgcode', 'district_code'].includes(k))
    .map(([k, v]) => row(k, v)).join('');
  panel.hidden = false;
  panel.innerHTML = `<button class="close" aria-label="close">×</button><h2>${escapeHtml(layer?.title ?? feature.layer.id)}</h2>
    <table><tbody>${codeRows(props, districtNames)}${plain}</tbody><tbody class="grid-detail"></tbody></table>`;
  panel.querySelector('.close').onclick = () => { panel.hidden = true; };
  panel.querySelector('.grid-detail').innerHTML = await gridRows(props.bgcode);
}
