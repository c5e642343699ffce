// What the conference browser scripts (sfu_browser.js, qb_conference_browser.js) share: a
// static server for the page and its scripts, Chromium with fake devices and loopback-only
// WebRTC, pages with their console kept for failures, a poll-until helper, and the exit.
'use strict';

const http = require('http');
const fs = require('fs');
const os = require('os');
const path = require('path');

const puppeteer = require('puppeteer-core');

const out = (line) => process.stdout.write(line + '\n');
const err = (line) => process.stderr.write(line + '\n');

const state = { browser: null, userDataDir: null, pages: [] };

async function finish(code) {
  if (code !== 0) {
    for (const p of state.pages) {
      err(`--- page ${p.name}: console (${p.lines.length} lines)`);
      for (const line of p.lines.slice(-60)) err(`  ${line}`);
    }
  }
  try {
    if (state.browser) await state.browser.close();
  } catch (e) {
    /* already gone */
  }
  if (state.userDataDir) fs.rmSync(state.userDataDir, { recursive: true, force: true });
  process.exit(code);
}

/// Fails the run if it is not over after `ms`.
function deadline(ms) {
  setTimeout(() => {
    out('FAIL timeout: the scenario did not finish in time');
    finish(1);
  }, ms).unref();
}

/// Serves an empty page, `scripts` ({'/name.js': file path}) and the in-page `harness` function
/// as /harness.js, on 127.0.0.1; resolves to the base URL.
function serve(scripts, harness) {
  const page = '<!doctype html><html><head><meta charset="utf-8"></head><body></body></html>';
  return new Promise((resolve, reject) => {
    const srv = http.createServer((req, res) => {
      const url = req.url.split('?')[0];
      if (url === '/') {
        res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
        res.end(page);
      } else if (scripts[url]) {
        res.writeHead(200, { 'Content-Type': 'application/javascript; charset=utf-8' });
        fs.createReadStream(scripts[url]).pipe(res);
      } else if (url === '/harness.js') {
        res.writeHead(200, { 'Content-Type': 'application/javascript; charset=utf-8' });
        res.end(`(${harness.toString()})();`);
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${srv.address().port}/`));
  });
}

/// Chromium with fake camera and microphone; WebRTC may use loopback and shows real addresses
/// (no mDNS names), so everything stays on 127.0.0.1.
async function launch() {
  state.userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-chromium-conf-'));
  state.browser = await puppeteer.launch({
    executablePath: process.env.SWITCHBOARD_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    userDataDir: state.userDataDir,
    args: [
      '--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--autoplay-policy=no-user-gesture-required',
      '--allow-loopback-in-peer-connection',
      '--disable-features=WebRtcHideLocalIpsWithMdns',
    ],
  });
}

/// A page named `name` with `scripts` (paths under `base`) loaded in order.
async function openPage(name, base, scripts) {
  const page = await state.browser.newPage();
  const entry = { name, page, lines: [] };
  page.on('console', (m) => entry.lines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => entry.lines.push(`pageerror: ${e.message}`));
  await page.goto(base);
  for (const script of scripts) {
    await page.addScriptTag({ url: `${base}${script}` });
  }
  state.pages.push(entry);
  return entry;
}

async function waitFor(what, predicate, timeoutMs = 60000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

module.exports = { out, err, state, finish, deadline, serve, launch, openPage, waitFor };
