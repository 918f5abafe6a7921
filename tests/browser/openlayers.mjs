// OpenLayers 10 + ol-mapbox-style (web_map/node_modules, pinned) draw the platform's MapLibre style
// in Debian Chromium, then the HTML items page draws its own map:
// node tests/browser/openlayers.mjs BASE_URL SCREENSHOT.png → one JSON line.
import { join } from 'node:path';
import { openBrowser, ROOT } from './chromium.mjs';

const [base, screenshot] = process.argv.slice(2);
const modules = join(ROOT, 'web_map', 'node_modules');
const { page, consoleErrors, close } = await openBrowser(1024, 768);
try {
  await page.setContent('<!doctype html><html><head><link rel="icon" href="data:,"></head>'
    + '<body style="margin:0"><div id="map" style="width:1024px;height:768px"></div></body></html>');
  await page.addStyleTag({ path: join(modules, 'ol', 'ol.css') });
  await page.addScriptTag({ path: join(modules, 'ol', 'dist', 'ol.js') });
  await page.addScriptTag({ path: join(modules, 'ol-mapbox-style', 'dist', 'olms.js') });
  const report = await page.evaluate(async (styleUrl) => {
    const map = new ol.Map({ target: 'map', view: new ol.View({ center: ol.proj.fromLonLat([118.27, 33.96]), zoom: 14 }) });
    const apply = olms.apply ?? olms.default;
    await apply(map, styleUrl);
    await new Promise((resolve) => map.once('rendercomplete', resolve));
    const tiles = map.getLayers().getArray().filter((layer) => layer instanceof ol.layer.VectorTile);
    const features = tiles.flatMap((layer) => layer.getFeaturesInExtent(map.getView().calculateExtent(map.getSize())));
    const bySourceLayer = {};
    for (const feature of features) {
      const name = feature.get('layer') ?? feature.get('mvt:layer') ?? 'unknown';
      bySourceLayer[name] = (bySourceLayer[name] ?? 0) + 1;
    }
    return { vectorTileLayers: tiles.length, features: features.length, bySourceLayer };
  }, `${base}/styles/default/style.json`);
  await page.screenshot({ path: screenshot });

  await page.goto(`${base}/collections/stall_sites/items?f=html&limit=100`);
  const ready = await page.waitForFunction(() => document.getElementById('feature-map')?.dataset.ready === 'true',
    null, { timeout: 60000 }).then(() => true, () => false);
  const drawn = ready ? await page.evaluate(() => window.featureMap.queryRenderedFeatures({ layers: ['points'] }).length) : 0;
  await page.screenshot({ path: screenshot.replace(/\.png$/, '_items_page.png') });
  console.log(JSON.stringify({ ...report, htmlMap: { ready, drawn }, consoleErrors }));
} finally {
  await close();
}
