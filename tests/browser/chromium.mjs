// Headless Debian Chromium with software WebGL (SwiftShader), driven by playwright-core from
// web_map/node_modules; the recipe of /work/shared/notes/browser_testing.md. Used by the browser
// tests and by bench/bench_wall.mjs.
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { chromium } = createRequire(join(ROOT, 'web_map', 'package.json'))('playwright-core');

const FLAGS = ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--no-first-run', '--disable-quic', '--use-angle=swiftshader', '--enable-unsafe-swiftshader'];

// Opens a fresh profile at the given viewport; returns { page, consoleErrors, close }.
export async function openBrowser(width, height) {
  const profile = mkdtempSync(join(tmpdir(), 'cityops-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium', headless: true, args: FLAGS,
    viewport: { width, height }, deviceScaleFactor: 1,
  });
  const page = context.pages()[0] ?? await context.newPage();
  const consoleErrors = [];
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text().slice(0, 300)));
  page.on('pageerror', (e) => consoleErrors.push(String(e.message).slice(0, 300)));
  const close = async () => { await context.close(); rmSync(profile, { recursive: true, force: true }); };
  return { page, consoleErrors, close };
}

// Loads the wall and waits for its first 'idle' (every source loaded and drawn); returns ms taken.
export async function loadWall(page, base, timeout = 90000) {
  const start = Date.now();
  await page.goto(`${base}/map/`);
  await page.waitForFunction(() => window.__wall?.idle || window.__wall?.errors.length, null, { timeout });
  return Date.now() - start;
}

export const settle = (page, timeout = 60000) => page.waitForFunction(
  () => !window.map.isMoving() && window.map.areTilesLoaded() && window.map.loaded(), null, { timeout });
