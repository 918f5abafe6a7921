// Browser test of the command wall, driven by tests/test_wall_browser.py.
// Usage: node wall.mjs BASE_URL ALARM_JSON REVIEWER_KEY OUT_DIR
//   ALARM_JSON = {"objcode", "lon", "lat", "bgcode", "community"}: the manhole cover the test will raise an
//   alarm on, its unit grid and its community's name (searched for by code and by name).
// Protocol: prints {"ready_for_alarm": true} once the wall shows that cover; the caller INSERTs the
// alarm row with plain SQL and writes a line to stdin; the script then times how long the wall takes
// to show it. The last stdout line is the JSON report.
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { openBrowser, loadWall, settle } from './chromium.mjs';

const [base, alarmJson, reviewerKey, outDir] = process.argv.slice(2);
const cover = JSON.parse(alarmJson);
const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const report = { layers: {}, toggles: {} };

// Camera stops that together bring every layer past its minzoom, over the main town's centre.
const STOPS = [{ zoom: null }, { zoom: 11.5 }, { zoom: 13.5 }, { zoom: 14.6 }, { zoom: 15.6 }, { zoom: 16.6 }];

// Where a place is on the page (map.project is relative to the map's container, which sits between the panels).
const pagePoint = (page, { lon, lat }) => page.evaluate(([lon, lat]) => {
  const { x, y } = window.map.project([lon, lat]);
  const box = window.map.getContainer().getBoundingClientRect();
  return { x: x + box.left, y: y + box.top };
}, [lon, lat]);

async function renderedCounts(page, layerIds) {
  return page.evaluate((ids) => Object.fromEntries(ids.map((id) => [id,
    window.map.queryRenderedFeatures({ layers: [id] }).length])), layerIds);
}

async function checkLayers(page) {
  const layers = await page.evaluate(() => fetch('/catalogue').then((r) => r.json()).then((c) => c.layers.map((l) => l.id)));
  // The union of all components starts hidden: switching it on through the panel is part of the test.
  await page.click('[data-layer="components"] input[type=checkbox]');
  for (const stop of STOPS) {
    if (stop.zoom !== null) {
      await page.evaluate(({ zoom, lon, lat }) => window.map.jumpTo({ center: [lon, lat], zoom }), { zoom: stop.zoom, ...cover });
    }
    await settle(page);
    const missing = layers.filter((id) => !report.layers[id]);
    for (const [id, n] of Object.entries(await renderedCounts(page, missing))) {
      if (n > 0) report.layers[id] = { features: n, zoom: +(await page.evaluate(() => window.map.getZoom())).toFixed(1) };
    }
  }
  // Layers found only in a corner of the city (the drone change candidates awaiting review): fly to
  // one of their features (OGC API Features), past the layer's minzoom, and look again.
  for (const id of layers.filter((l) => !report.layers[l])) {
    const where = await page.evaluate(async (id) => {
      const [catalogue, items] = await Promise.all([fetch('/catalogue').then((r) => r.json()),
        fetch(`/collections/${id}/items?limit=1`).then((r) => r.json())]);
      const feature = items.features?.[0];
      if (!feature) return null;
      const xs = [], ys = [];
      const walk = (c) => (typeof c[0] === 'number' ? (xs.push(c[0]), ys.push(c[1])) : c.forEach(walk));
      walk(feature.geometry.coordinates);
      const minzoom = catalogue.layers.find((l) => l.id === id).minzoom;
      return { center: [(Math.min(...xs) + Math.max(...xs)) / 2, (Math.min(...ys) + Math.max(...ys)) / 2],
        zoom: Math.max(minzoom + 1, 15) };
    }, id);
    if (!where) continue;
    await page.evaluate((where) => window.map.jumpTo(where), where);
    await settle(page);
    const n = (await renderedCounts(page, [id]))[id];
    if (n > 0) report.layers[id] = { features: n, zoom: where.zoom, flownTo: where.center };
  }
  report.layersMissing = layers.filter((id) => !report.layers[id]);
}

async function checkToggle(page, id) {
  const box = `[data-layer="${id}"] input[type=checkbox]`;
  await page.click(box);
  await settle(page);
  const off = (await renderedCounts(page, [id]))[id];
  await page.click(box);
  await settle(page);
  const on = (await renderedCounts(page, [id]))[id];
  report.toggles[id] = { off, on };
}

async function checkLiveAlarm(page) {
  await page.evaluate(({ lon, lat }) => window.map.jumpTo({ center: [lon, lat], zoom: 16 }), cover);
  await settle(page);
  await page.waitForFunction(() => window.__wall.figures && window.__wall.live === 'live', null, { timeout: 20000 });
  const before = await page.evaluate(() => window.__wall.figures.open_alarms.total);
  const overdueBefore = await page.evaluate(() => window.__wall.figures.open_cases.overdue);
  console.log(JSON.stringify({ ready_for_alarm: true }));
  const caseNo = String((await stdinLines.next()).value ?? '').split(' ')[1];
  const start = Date.now();
  const seen = { figure: null, map: null };
  const shown = page.waitForFunction(({ objcode, before }) => {
    const total = Number(document.querySelector('[data-figure="open-alarms"]')?.textContent.replace(/\D/g, ''));
    const onMap = window.map.queryRenderedFeatures({ layers: ['alarms'] }).some((f) => f.properties.objcode === objcode);
    return total === before + 1 && onMap;
  }, { objcode: cover.objcode, before }, { timeout: 10000, polling: 50 });
  const figure = page.waitForFunction((before) => Number(document.querySelector('[data-figure="open-alarms"]')
    ?.textContent.replace(/\D/g, '')) === before + 1, before, { timeout: 10000, polling: 50 }).then(() => { seen.figure = Date.now() - start; });
  await Promise.all([shown, figure]);
  seen.map = Date.now() - start;
  report.liveAlarm = { openAlarmsBefore: before, figureMs: seen.figure, figureAndMapMs: seen.map };
  if (caseNo) {
    // the caller also moved a dispatched case past its deadline: it blinks on the map and is counted
    await page.waitForFunction(({ caseNo, overdueBefore }) => (window.__wall.overdueCases ?? []).includes(caseNo)
      && window.__wall.figures.open_cases.overdue === overdueBefore + 1, { caseNo, overdueBefore }, { timeout: 10000, polling: 50 });
    report.overdueCase = { caseNo, ms: Date.now() - start, overdueBefore };
  }
}

async function checkPlanner(page) {
  await page.click('#modes button[data-mode="planner"]');
  const point = await pagePoint(page, cover);
  const ask = async (tool) => {
    await page.check(`#planner input[name=tool][value=${tool}]`);
    await page.$eval('#planner .answer', (e) => { e.innerHTML = ''; });
    await page.mouse.click(point.x, point.y);
    await page.waitForFunction(() => document.querySelector('#planner .answer table, #planner .answer p'), null, { timeout: 20000 });
    return page.$eval('#planner .answer', (e) => e.innerText.replace(/\s+/g, ' ').slice(0, 300));
  };
  await page.selectOption('#planner select[name=layer]', 'manhole_covers');
  report.planner = { locate: await ask('locate'), within: await ask('within') };
  await page.screenshot({ path: join(outDir, 'wall-1080p-planner.png') });
}

const pendingFigure = (page) => page.$eval('[data-figure="review-pending"]', (e) => Number(e.textContent.replace(/\D/g, '')));
const candidateOnMap = (page, id) => page.evaluate((id) => window.map.queryRenderedFeatures({ layers: ['change_candidates'] })
  .filter((f) => String(f.properties.id) === id).length, id);

// Confirms the first pending candidate with the reviewer key: the desk must report it, the candidate
// must leave the queue, the map's change_candidates layer and the "awaiting review" figure.
async function checkReviewDesk(page) {
  await page.click('#modes button[data-mode="review"]');
  await page.waitForFunction(() => document.querySelector('#review-desk h2'), null, { timeout: 10000 });
  if (await page.$('#review-desk [data-state="unavailable"]')) {
    report.review = { skipped: 'the drone review API (/drone/candidates) is not installed on this server' };
    return;
  }
  const first = await page.$('#review-desk .queue li[data-id]');
  if (!first) {
    report.review = { skipped: 'the drone review queue is empty' };
    return;
  }
  const id = await first.getAttribute('data-id');
  const queueBefore = await page.$$eval('#review-desk .queue li[data-id]', (items) => items.length);
  const figureBefore = await pendingFigure(page);
  // the after view is the after flight as the detection registered it, not the flight as georeferenced
  const registeredTile = page.waitForResponse((r) => /\/drone\/detections\/\d+\/after\/tiles\//.test(r.url()),
    { timeout: 20000 }).then((r) => r.status(), () => null);
  await first.click();   // the desk fits the map to the candidate and opens the before/after pair
  await settle(page);
  const registeredAfterStatus = await registeredTile;
  const onMapBefore = await candidateOnMap(page, id);
  await page.fill('#reviewer-key', reviewerKey);
  await page.fill('#review-note', 'confirmed from the browser test');
  await page.screenshot({ path: join(outDir, 'wall-1080p-review-compare.png') });
  await page.click('#review-desk button[data-decision="confirm"]');
  await page.waitForFunction(() => document.querySelector('.review-result')?.dataset.outcome, null, { timeout: 20000 });
  const outcome = await page.$eval('.review-result', (e) => e.dataset.outcome);
  const message = await page.$eval('.review-result', (e) => e.textContent);
  let leftMap = false;
  if (outcome === 'confirm') {
    // The candidate's tiles are reloaded when the change feed reports city.change_candidate.
    leftMap = await page.waitForFunction((id) => !window.map.queryRenderedFeatures({ layers: ['change_candidates'] })
      .some((f) => String(f.properties.id) === id) && window.map.areTilesLoaded(), id, { timeout: 15000, polling: 100 })
      .then(() => true, () => false);
  }
  report.review = { id, outcome, message, queueBefore, figureBefore, onMapBefore, leftMap, registeredAfterStatus,
    queueAfter: await page.$$eval('#review-desk .queue li[data-id]', (items) => items.length),
    stillQueued: !!(await page.$(`#review-desk .queue li[data-id="${id}"]`)),
    figureAfter: await pendingFigure(page) };
}

// Types a query into the search box; returns the hits' texts and, once the map has flown to a
// single hit, where the map's centre ended up.
async function search(page, q) {
  await page.$eval('#search-hits', (e) => { e.innerHTML = ''; });
  await page.fill('#search-input', q);
  await page.press('#search-input', 'Enter');
  await page.waitForFunction(() => document.querySelectorAll('#search-hits li').length > 0, null, { timeout: 10000 });
  const hits = await page.$$eval('#search-hits li', (items) => items.map((i) => i.textContent.trim().replace(/\s+/g, ' ')));
  await page.waitForTimeout(1500);  // the fly-to animation lasts 1.2 s
  await settle(page);
  const center = await page.evaluate(() => window.map.getCenter().toArray());
  return { hits, center };
}

async function checkSearch(page) {
  await page.click('#modes button[data-mode="inspect"]');
  report.searchGrid = await search(page, cover.bgcode);
  report.searchName = await search(page, cover.community);
  const byCode = await search(page, cover.objcode);
  report.search = byCode.hits;
  report.searchComponent = byCode;
  const point = await pagePoint(page, cover);
  await page.mouse.click(point.x, point.y);
  await page.waitForFunction(() => document.querySelector('#inspector .grid-detail tr'), null, { timeout: 10000 });
  report.inspector = await page.$eval('#inspector', (e) => e.innerText.replace(/\s+/g, ' ').slice(0, 2000));
}

// The figures as the panel prints them, next to the figures the page received.
async function readFigures(page) {
  return page.evaluate(() => ({
    shown: Object.fromEntries([...document.querySelectorAll('[data-figure]')].map((e) => [e.dataset.figure, e.textContent.trim()])),
    received: window.__wall.figures,
  }));
}

// What the layout looks like at this screen size: the root font size, the map's box and whether
// the whole city (the catalogue's extent) is inside the map's view.
async function readLayout(page) {
  return page.evaluate(async () => {
    const extent = (await fetch('/catalogue').then((r) => r.json())).extent.bbox;
    const box = (sel) => { const r = document.querySelector(sel)?.getBoundingClientRect(); return r && { left: r.left, top: r.top, width: r.width, height: r.height }; };
    const b = window.map.getBounds();
    return {
      rootFontPx: parseFloat(getComputedStyle(document.documentElement).fontSize),
      viewport: { width: innerWidth, height: innerHeight },
      map: box('#map'), figures: box('[data-figure="open-alarms"]'), search: box('#search'),
      view: [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()], extent,
    };
  });
}

const { page, consoleErrors, close } = await openBrowser(1920, 1080);
try {
  report.firstIdleMs = await loadWall(page, base);
  report.wallErrors = await page.evaluate(() => window.__wall.errors);
  report.orthophotoLayers = await page.evaluate(() => window.map.getStyle().layers.filter((l) => l.type === 'raster').length);
  report.layout = await readLayout(page);
  report.figures = await readFigures(page);
  await page.screenshot({ path: join(outDir, 'wall-1080p.png') });
  await checkLayers(page);
  await checkToggle(page, 'stall_sites');
  await checkLiveAlarm(page);
  await page.screenshot({ path: join(outDir, 'wall-1080p-alarm.png') });
  await checkSearch(page);
  await page.screenshot({ path: join(outDir, 'wall-1080p-inspector.png') });
  await checkPlanner(page);
  await checkReviewDesk(page);
  await page.screenshot({ path: join(outDir, 'wall-1080p-review.png') });
  report.wallErrors = await page.evaluate(() => window.__wall.errors);
} catch (error) {
  report.error = String(error.stack ?? error).slice(0, 1000);
  await page.screenshot({ path: join(outDir, 'wall-failure.png') }).catch(() => {});
} finally {
  report.consoleErrors = consoleErrors;
  await close();
}

// The same wall on a 4K screen: it must load, fit the city and stay error-free.
const uhd = await openBrowser(3840, 2160);
try {
  report.uhd = { firstIdleMs: await loadWall(uhd.page, base) };
  report.uhd.layout = await readLayout(uhd.page);
  report.uhd.wallErrors = await uhd.page.evaluate(() => window.__wall.errors);
  await uhd.page.screenshot({ path: join(outDir, 'wall-4k.png') });
} catch (error) {
  report.uhd = { error: String(error.message ?? error).slice(0, 500) };
} finally {
  report.uhd.consoleErrors = uhd.consoleErrors;
  await uhd.close();
}
console.log(JSON.stringify(report));
process.exit(0);
