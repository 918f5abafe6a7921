// Smoothness of the command wall with every layer on, in headless Debian Chromium (SwiftShader).
// Usage: node bench/bench_wall.mjs BASE_URL [WxH=1920x1080] [runs=3]
// Measures, per run: time from page load to the first 'idle' with all layers on; during a scripted
// 6 s camera flight over the main town (zoom in with a 40° rotation, pan, zoom back out), the
// main-thread time MapLibre spends in its render call per frame (p50/p95/max) and frames per
// second; then the same flight with a background-only style in the same page, and the ratio of
// the two fps.
// MapLibre's time per frame is given twice: wall-clock (performance.now() around Map#_render) and
// the main thread's CPU time in it (thread time of the animation-frame task that ran it, from a
// Chromium trace). Here the GPU is SwiftShader on the same 2 cores: while it rasterises, the main
// thread is descheduled or waits on the GPU process inside WebGL calls, and wall-clock counts that
// GPU time; CPU time is MapLibre's own work, which is what the target is about.
// Also counted: vector-tile requests from page load to the end of the flight, and the 1-min load average.
import { loadavg } from 'node:os';
import { openBrowser, settle } from '../tests/browser/chromium.mjs';

const [base, size = '1920x1080', runsArg = '3'] = process.argv.slice(2);
const [width, height] = size.split('x').map(Number);
const FLIGHT_MS = 6000;
const START = { center: [118.275, 33.955], zoom: 12.5, bearing: 0 };

// In the page: run the flight, counting frames and timing Map#_render (private, but the only
// per-frame hook MapLibre 6 has; see /work/shared/notes/browser_testing.md).
function flight(ms) {
  const map = window.map;
  return new Promise((resolve) => {
    const renderMs = []; let frames = 0; const original = map._render;
    map._render = function (...args) {
      const t = performance.now();
      try { return original.apply(this, args); } finally {
        renderMs.push(performance.now() - t);
        performance.mark('maplibre-render');   // stamped by the trace clock inside the frame's task
      }
    };
    const t0 = performance.now();
    const tick = () => { frames++; if (performance.now() - t0 < ms) requestAnimationFrame(tick); };
    requestAnimationFrame(tick);
    const legs = [
      { zoom: 14, bearing: 40, center: [118.285, 33.962] },
      { zoom: 14, bearing: 40, center: [118.262, 33.950] },
      { zoom: 12.5, bearing: 0, center: [118.275, 33.955] },
    ];
    const fly = (i) => {
      if (i === legs.length) {
        map._render = original;
        return resolve({ fps: +(frames / ((performance.now() - t0) / 1000)).toFixed(1), renderMs });
      }
      map.easeTo({ ...legs[i], duration: ms / legs.length, easing: (x) => x });
      map.once('moveend', () => fly(i + 1));
    };
    fly(0);
  });
}

const quantiles = (values) => {
  const sorted = values.slice().sort((a, b) => a - b);
  const q = (p) => +(sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0).toFixed(2);
  return { p50: q(0.5), p95: q(0.95), max: q(1) };
};

// Runs the flight under a Chromium trace; adds the CPU time of each render (thread time of the
// animation-frame task in which each 'maplibre-render' mark was made) to its wall-clock figures.
async function tracedFlight(page) {
  const cdp = await page.context().newCDPSession(page);
  const events = [];
  cdp.on('Tracing.dataCollected', (e) => events.push(...e.value));
  const complete = new Promise((resolve) => cdp.once('Tracing.tracingComplete', resolve));
  await cdp.send('Tracing.start', { traceConfig: { includedCategories: ['devtools.timeline', 'blink.user_timing'] } });
  const { fps, renderMs } = await page.evaluate(flight, FLIGHT_MS);
  await cdp.send('Tracing.end');
  await complete;
  await cdp.detach();
  const tasks = events.filter((e) => e.name === 'FireAnimationFrame' && e.ph === 'X' && e.tdur !== undefined);
  const cpuMs = events.filter((e) => e.name === 'maplibre-render').map((mark) => {
    const task = tasks.find((t) => t.pid === mark.pid && t.ts <= mark.ts && mark.ts <= t.ts + t.dur);
    return task ? task.tdur / 1000 : null;
  }).filter((ms) => ms !== null);
  const clock = quantiles(renderMs), cpu = quantiles(cpuMs);
  return { fps, renders: renderMs.length, renderMsP50: clock.p50, renderMsP95: clock.p95, renderMsMax: clock.max,
    cpuRenders: cpuMs.length, renderCpuMsP50: cpu.p50, renderCpuMsP95: cpu.p95, renderCpuMsMax: cpu.max };
}

const results = [];
for (let run = 0; run < Number(runsArg); run++) {
  const { page, consoleErrors, close } = await openBrowser(width, height);
  try {
    // Vector-tile requests from page load to the end of the wall's flight (load-independent).
    let tileRequests = 0, counting = true;
    page.on('request', (r) => { if (counting && /\/tiles\/WebMercatorQuad\/\d+\/\d+\/\d+/.test(r.url())) tileRequests++; });
    const t = Date.now();
    await page.goto(`${base}/map/?all-layers`);
    await page.waitForFunction(() => window.__wall?.idle || window.__wall?.errors.length, null, { timeout: 180000 });
    const firstIdleMs = Date.now() - t;
    await page.evaluate((start) => window.map.jumpTo(start), START);
    await settle(page, 180000);
    const wall = await tracedFlight(page);
    await settle(page, 180000);
    counting = false;
    await page.evaluate((start) => { window.map.jumpTo(start); window.map.setStyle({ version: 8, sources: {}, layers: [
      { id: 'background', type: 'background', paint: { 'background-color': '#040b16' } }] }); }, START);
    await settle(page, 60000);
    const background = await tracedFlight(page);
    results.push({ run, loadavg1m: +loadavg()[0].toFixed(1), tileRequests, firstIdleMs, wall, background, fpsRatio: +(wall.fps / background.fps).toFixed(2),
      errors: [...consoleErrors, ...await page.evaluate(() => window.__wall.errors)] });
    console.error(JSON.stringify(results.at(-1)));
  } finally {
    await close();
  }
}
const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(JSON.stringify({
  size, runs: results.length,
  firstIdleMsMedian: median(results.map((r) => r.firstIdleMs)),
  renderMsP95Median: median(results.map((r) => r.wall.renderMsP95)),
  renderCpuMsP95Median: median(results.map((r) => r.wall.renderCpuMsP95)),
  wallFpsMedian: median(results.map((r) => r.wall.fps)),
  backgroundFpsMedian: median(results.map((r) => r.background.fps)),
  fpsRatioMedian: median(results.map((r) => r.fpsRatio)),
  tileRequestsMedian: median(results.map((r) => r.tileRequests)),
  results,
}, null, 2));
