// OpenLayers 10's OGCMapTile source reads an orthophoto's OGC API map tileset (its tiling-scheme
// link and rel=item templates) in Debian Chromium and draws it:
// node tests/browser/openlayers_imagery.mjs TILESET_URL WEST,SOUTH,EAST,NORTH SCREENSHOT.png → one JSON line.
import { join } from 'node:path';
import { openBrowser, ROOT } from './chromium.mjs';

const [tileset, bbox, screenshot] = process.argv.slice(2);
const modules = join(ROOT, 'web_map', 'node_modules');
const { page, consoleErrors, close } = await openBrowser(512, 512);
try {
  await page.setContent('<!doctype html><html><head><link rel="icon" href="data:,"></head>'
    + '<body style="margin:0"><div id="map" style="width:512px;height:512px"></div></body></html>');
  await page.addStyleTag({ path: join(modules, 'ol', 'ol.css') });
  await page.addScriptTag({ path: join(modules, 'ol', 'dist', 'ol.js') });
  const report = await page.evaluate(async ([url, box]) => {
    const source = new ol.source.OGCMapTile({ url, crossOrigin: 'anonymous' });
    // the source reads the tileset document and its tiling scheme first
    await new Promise((resolve) => (source.getState() !== 'loading' ? resolve() : source.once('change', resolve)));
    const map = new ol.Map({ target: 'map', layers: [new ol.layer.Tile({ source })], view: new ol.View() });
    map.getView().fit(ol.proj.transformExtent(box, 'EPSG:4326', 'EPSG:3857'), { size: map.getSize() });
    await new Promise((resolve) => map.once('rendercomplete', resolve));
    // the centre of the drawn canvas: the orthophoto's own colours (none before any tile is drawn)
    const canvas = document.querySelector('#map canvas');
    const pixel = canvas ? Array.from(canvas.getContext('2d').getImageData(canvas.width / 2, canvas.height / 2, 1, 1).data) : null;
    return { state: source.getState(), error: String(source.getError?.() ?? ''), centre: pixel };
  }, [tileset, bbox.split(',').map(Number)]);
  await page.screenshot({ path: screenshot });
  console.log(JSON.stringify({ ...report, consoleErrors }));
} finally {
  await close();
}
