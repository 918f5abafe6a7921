// OpenLayers 10 + ol-mapbox-style (web_map/node_modules, pinned) draw the platform's MapLibre style
// in Debian Chromium, a bbox-strategy vector layer reads a dense collection page by page, then the
// HTML items page draws its own map:
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
    window.styleMap = map;
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

  // OGC API Features with OpenLayers' bbox strategy over the urban core (more than one 10,000-feature
  // page of components): the loader of the README follows next links until the view is complete
  const features = await page.evaluate(async (base) => {
    window.styleMap.setTarget(null);
    const map = new ol.Map({ target: 'map', layers: [], view: new ol.View() });
    map.getView().fit(ol.proj.transformExtent([118.245, 33.94, 118.295, 33.98], 'EPSG:4326', 'EPSG:3857'),
      { size: map.getSize() });
    let matched = null;
    let pages = 0;
    const errors = [];
    const started = performance.now();
    const source = new ol.source.Vector({
      format: new ol.format.GeoJSON(),
      strategy: ol.loadingstrategy.bbox,
      // OpenLayers 10: an async loader resolves to the features (the source adds them)
      loader: async (extent, resolution, projection) => {
        const [w, s, e, n] = ol.proj.transformExtent(extent, projection, 'EPSG:4326');
        let url = `${base}/collections/components/items?bbox=${w},${s},${e},${n}&limit=10000`;
        const loaded = [];
        try {
          while (url) {
            const page = await (await fetch(url)).json();
            matched ??= page.numberMatched;
            pages += 1;
            loaded.push(...source.getFormat().readFeatures(page, { featureProjection: projection }));
            url = page.links.find((link) => link.rel === 'next')?.href;
          }
        } catch (error) {
          errors.push(String(error));
          source.removeLoadedExtent(extent);
          throw error;
        }
        return loaded;
      },
    });
    const done = new Promise((resolve) => {
      source.once('featuresloadend', () => resolve(true));
      source.once('featuresloaderror', () => resolve(false));
    });
    map.addLayer(new ol.layer.Vector({ source }));
    const ok = await done;
    await new Promise((resolve) => map.once('rendercomplete', resolve));
    return { ok, errors, loaded: source.getFeatures().length, matched, pages, ms: Math.round(performance.now() - started) };
  }, base);
  await page.screenshot({ path: screenshot.replace(/\.png$/, '_features.png') });

  await page.goto(`${base}/collections/stall_sites/items?f=html&limit=100`);
  const ready = await page.waitForFunction(() => document.getElementById('feature-map')?.dataset.ready === 'true',
    null, { timeout: 60000 }).then(() => true, () => false);
  const drawn = ready ? await page.evaluate(() => window.featureMap.queryRenderedFeatures({ layers: ['points'] }).length) : 0;
  await page.screenshot({ path: screenshot.replace(/\.png$/, '_items_page.png') });
  console.log(JSON.stringify({ ...report, features, htmlMap: { ready, drawn }, consoleErrors }));
} finally {
  await close();
}
