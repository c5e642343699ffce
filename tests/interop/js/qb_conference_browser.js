#!/usr/bin/env node
// The real QuickBlox conference client (quickblox-multiparty-video-conferencing-client 0.8.8,
// vendor/, unmodified, with webrtc-adapter as its `adapter` global) in three headless Chromium
// pages with fake camera and microphone, used the way QuickBlox's own sample does: createSession,
// attachVideoConferencingPlugin(false), join({roomId: dialog id, userId, display}), and for every
// `participantjoined` attachVideoConferencingPlugin(true, id). Each page must play the other two
// users' remote streams (video frames decoded in a <video> element). A fourth user, not an
// occupant of the dialog, gets the client's `error` event. Then everyone leaves and destroys
// the session the way the sample's hang-up button does.
//
// Env: SB_JANUS_URL, SB_ROOM, SB_USERS, SB_OUTSIDER, SWITCHBOARD_CHROMIUM (as sfu_browser.js).
'use strict';

const http = require('http');
const fs = require('fs');
const os = require('os');
const path = require('path');

const puppeteer = require('puppeteer-core');

const CHROMIUM = process.env.SWITCHBOARD_CHROMIUM || '/usr/bin/chromium';
const JANUS_URL = process.env.SB_JANUS_URL;
const ROOM = process.env.SB_ROOM;
const USERS = JSON.parse(process.env.SB_USERS);
const OUTSIDER = JSON.parse(process.env.SB_OUTSIDER);
const CLIENT_JS = path.join(__dirname, 'vendor', 'quickblox-multiparty-video-conferencing-client-0.8.8.min.js');
const ADAPTER_JS = require.resolve('webrtc-adapter/out/adapter.js');
const GLOBAL_TIMEOUT_MS = 120000;

const out = (line) => process.stdout.write(line + '\n');
const err = (line) => process.stderr.write(line + '\n');
let browser = null;
let userDataDir = null;
const pages = [];

async function finish(code) {
  if (code !== 0) {
    for (const p of pages) {
      err(`--- page ${p.name}: console (${p.lines.length} lines)`);
      for (const line of p.lines.slice(-60)) err(`  ${line}`);
    }
  }
  try {
    if (browser) await browser.close();
  } catch (e) {
    /* already gone */
  }
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
  process.exit(code);
}

setTimeout(() => {
  out('FAIL timeout: the scenario did not finish in time');
  finish(1);
}, GLOBAL_TIMEOUT_MS).unref();

// In the page: the client, driven as QuickBlox's sample drives it.
function harness() {
  window.SB = { errors: [], videos: {}, joined: false, left: [] };
  window.SB.start = async (url, room, me) => {
    const client = new QBVideoConferencingClient({ server: url, debug: false, iceServers: [] });
    window.SB.client = client;
    client.on(client.events.ERROR, (e) => window.SB.errors.push(String(e && e.error ? e.error : e)));
    await client.createSession();
    client.on(client.events.PARTICIPANT_JOINED, (participant) => {
      client.attachVideoConferencingPlugin(true, participant.id);
    });
    client.on(client.events.PARTICIPANT_LEFT, (userId) => window.SB.left.push(userId));
    client.on(client.events.REMOTE_STREAM, (stream, userId) => {
      if (window.SB.videos[userId]) return;
      const video = document.createElement('video');
      video.muted = true;
      video.autoplay = true;
      video.playsInline = true;
      document.body.appendChild(video);
      QBVideoConferencingClient.attachMediaStream(video, stream);
      video.play().catch(() => {});
      window.SB.videos[userId] = video;
    });
    await client.attachVideoConferencingPlugin(false, null);
    await client.join({ roomId: room, userId: me.id, display: me.name, onlyAudio: false });
    window.SB.joined = true;
  };
  window.SB.frames = () => {
    const frames = {};
    for (const [id, video] of Object.entries(window.SB.videos)) {
      frames[id] = {
        decoded: video.getVideoPlaybackQuality().totalVideoFrames,
        size: `${video.videoWidth}x${video.videoHeight}`,
      };
    }
    return frames;
  };
  window.SB.hangUp = async () => {
    const client = window.SB.client;
    await client.leave();
    await client.detachVideoConferencingPlugin();
    await client.destroySession();
  };
}

function startServer() {
  const page = '<!doctype html><html><head><meta charset="utf-8"></head><body></body></html>';
  return new Promise((resolve, reject) => {
    const srv = http.createServer((req, res) => {
      const url = req.url.split('?')[0];
      const scripts = { '/adapter.js': ADAPTER_JS, '/client.js': CLIENT_JS };
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
    srv.listen(0, '127.0.0.1', () => resolve(srv));
  });
}

async function openPage(name, base) {
  const page = await browser.newPage();
  const entry = { name, page, lines: [] };
  page.on('console', (m) => entry.lines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => entry.lines.push(`pageerror: ${e.message}`));
  await page.goto(base);
  // The client needs the global `adapter` first (reference §1).
  for (const script of ['adapter.js', 'client.js', 'harness.js']) {
    await page.addScriptTag({ url: `${base}${script}` });
  }
  pages.push(entry);
  return entry;
}

async function waitFor(what, predicate, timeoutMs = 60000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function main() {
  let step = 'browser';
  try {
    const server = await startServer();
    const base = `http://127.0.0.1:${server.address().port}/`;
    userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-chromium-qbconf-'));
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      userDataDir,
      args: [
        '--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
        '--autoplay-policy=no-user-gesture-required',
        '--allow-loopback-in-peer-connection',
        '--disable-features=WebRtcHideLocalIpsWithMdns',
      ],
    });
    out(`STEP ${step} ok`);

    step = 'join';
    for (const user of USERS) {
      const p = await openPage(user.name, base);
      await p.page.evaluate((url, room, me) => window.SB.start(url, room, me), `${JANUS_URL}?token=${user.token}`, ROOM, user);
      const state = await p.page.evaluate(() => ({ joined: window.SB.joined, errors: window.SB.errors }));
      if (!state.joined || state.errors.length) throw new Error(`${user.name}: ${JSON.stringify(state)}`);
    }
    out(`STEP ${step} ok`);

    step = 'play';
    for (const p of pages) {
      const user = USERS.find((u) => u.name === p.name);
      const others = USERS.filter((u) => u.id !== user.id).map((u) => String(u.id));
      const frames = await waitFor(`${p.name} playing ${others}`, async () => {
        const f = await p.page.evaluate(() => window.SB.frames());
        return others.every((id) => f[id] && f[id].decoded >= 10) ? f : null;
      });
      out(`${p.name} played ${JSON.stringify(frames)}`);
    }
    out(`STEP ${step} ok`);

    step = 'outsider';
    const o = await openPage(OUTSIDER.name, base);
    await o.page.evaluate((url, room, me) => window.SB.start(url, room, me).catch((e) => window.SB.errors.push(String(e))),
      `${JANUS_URL}?token=${OUTSIDER.token}`, ROOM, OUTSIDER);
    const errors = await waitFor('the outsider refused', async () => {
      const e = await o.page.evaluate(() => window.SB.errors);
      return e.length ? e : null;
    }, 15000);
    if (!errors.some((e) => /Unauthorized|433|occupant/.test(e))) throw new Error(`the outsider got ${JSON.stringify(errors)}`);
    out(`outsider: ${errors[0]}`);
    out(`STEP ${step} ok`);

    step = 'leave';
    const [first, ...rest] = pages.slice(0, USERS.length);
    await first.page.evaluate(() => window.SB.hangUp());
    const firstId = USERS.find((u) => u.name === first.name).id;
    for (const p of rest) {
      await waitFor(`${p.name} seeing ${first.name} leave`, async () => {
        const left = await p.page.evaluate(() => window.SB.left);
        return left.map(String).includes(String(firstId));
      }, 15000);
    }
    out(`STEP ${step} ok`);
    out('ALL OK');
    await finish(0);
  } catch (e) {
    out(`FAIL ${step}: ${e && e.stack ? e.stack : e}`);
    await finish(1);
  }
}

main();
