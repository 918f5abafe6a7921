// Legend swatches read from a catalogue layer's MapLibre style, so the legend can never disagree
// with the map: a plain colour is one swatch; `match` and `case` expressions give one per branch.
import { escapeHtml } from './api.js';

const COLOR_PROPERTY = { circle: 'circle-color', line: 'line-color', fill: 'fill-color' };

function entries(color) {
  if (typeof color === 'string') return [{ color, label: '' }];
  if (Array.isArray(color) && color[0] === 'match') {
    const branches = color.slice(2, -1);
    const out = [];
    for (let i = 0; i < branches.length; i += 2) out.push({ color: branches[i + 1], label: String(branches[i]) });
    out.push({ color: color.at(-1), label: '其他 other' });
    return out;
  }
  if (Array.isArray(color) && color[0] === 'case') {
    const out = [];
    // A condition reads badly as a label; the layer's legend text says what the colours mean.
    for (let i = 1; i < color.length - 1; i += 2) out.push({ color: color[i + 1], label: '' });
    out.push({ color: color.at(-1), label: '' });
    return out;
  }
  return [];
}

function swatch(type, color, style) {
  const dashed = type === 'line' && style.paint?.['line-dasharray'] ? ' dashed' : '';
  return `<i class="swatch ${type}${dashed}" style="--c:${escapeHtml(color)}"></i>`;
}

export function legendHtml(layer) {
  const { type } = layer.style;
  const items = entries(layer.style.paint?.[COLOR_PROPERTY[type]]);
  const swatches = items.map(({ color, label }) =>
    `<span class="legend-item">${swatch(type, color, layer.style)}${escapeHtml(label)}</span>`).join('');
  return `<div class="legend">${swatches}<span class="legend-text">${escapeHtml(layer.legend)}</span></div>`;
}

export const firstColor = (layer) => entries(layer.style.paint?.[COLOR_PROPERTY[layer.style.type]])[0]?.color ?? '#888';
