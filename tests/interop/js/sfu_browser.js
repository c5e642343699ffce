#!/usr/bin/env node
// Three headless Chromium pages with fake camera and microphone join a QuickBlox dialog's
// conference through Meetecho's own Janus JavaScript client (npm janus-gateway 1.4.2, with
// webrtc-adapter), the way the QuickBlox conference client does: one publisher handle that
// joins the dialog room with the user's id and publishes, and one subscriber handle (and
// PeerConnection) per remote feed. Each page must decode the other two videos (frames
// decoded and inbound bytes rising in getStats). A fourth user, not an occupant of the
// dialog, must be refused with 433.
//
// Env (set by the Rust harness):
//   SB_JANUS_URL   ws://127.0.0.1:PORT/ (the token is appended as ?token=)
//   SB_ROOM        the dialog id
//   SB_USERS       [{"id":7,"token":"…","name":"…"}, …] (three occupants)
//   SB_OUTSIDER    {"id":9,"token":"…","name":"…"}
//   SWITCHBOARD_CHROMIUM  browser binary (default /usr/bin/chromium)
//
// Output: `STEP <name> ok` lines, then `ALL OK` (exit 0), or `FAIL <name>: …` (exit 1) with
// the pages' console lines on stderr.
'use strict';

const { out, state, finish, deadline, serve, launch, openPage, waitFor } = require('./conference_pages');

const JANUS_URL = process.env.SB_JANUS_URL;
const ROOM = process.env.SB_ROOM;
const USERS = JSON.parse(process.env.SB_USERS);
const OUTSIDER = JSON.parse(process.env.SB_OUTSIDER);
const JANUS_JS = require.resolve('janus-gateway/npm/src/janus.js');
const ADAPTER_JS = require.resolve('webrtc-adapter/out/adapter.js');
const GLOBAL_TIMEOUT_MS = 120000;

// The in-page harness: janus.js drives everything, the page reports through window.SB.
function harness() {
  window.SB = { log: [], received: {}, error: null, joined: null };
  const log = (line) => window.SB.log.push(line);

  window.SB.start = (url, room, me) =>
    new Promise((resolve) => {
      Janus.init({
        debug: ['warn', 'error'],
        callback: () => {
          const janus = new Janus({
            server: url,
            success: () => {
              window.SB.janus = janus;
              publish(janus, room, me, resolve);
            },
            error: (e) => {
              window.SB.error = `janus: ${e}`;
              resolve();
            },
          });
        },
      });
    });

  function publish(janus, room, me, resolve) {
    janus.attach({
      plugin: 'janus.plugin.videoroom',
      success: (handle) => {
        window.SB.main = handle;
        handle.send({
          message: { request: 'join', room, ptype: 'publisher', id: me.id, display: me.name },
        });
      },
      error: (e) => {
        window.SB.error = `attach: ${e}`;
        resolve();
      },
      onmessage: (msg, jsep) => {
        const handle = window.SB.main;
        if (msg.error_code) {
          window.SB.error = `${msg.error_code} ${msg.error}`;
          window.SB.errorCode = msg.error_code;
          resolve();
          return;
        }
        if (msg.videoroom === 'joined') {
          window.SB.joined = msg.id;
          handle.createOffer({
            tracks: [
              { type: 'audio', capture: true, recv: false },
              { type: 'video', capture: true, recv: false },
            ],
            success: (offer) => {
              handle.send({ message: { request: 'configure', audio: true, video: true }, jsep: offer });
            },
            error: (e) => {
              window.SB.error = `createOffer: ${e}`;
            },
          });
          resolve();
        }
        if (jsep) handle.handleRemoteJsep({ jsep });
        for (const p of msg.publishers || []) subscribe(janus, room, me, p.id);
      },
    });
  }

  // Janus 1.x multistream: one handle and PeerConnection for several feeds.
  window.SB.multistream = (room, feeds) => {
    window.SB.multi = { videos: {}, streams: null, error: null };
    let handle = null;
    window.SB.janus.attach({
      plugin: 'janus.plugin.videoroom',
      success: (h) => {
        handle = h;
        handle.send({
          message: { request: 'join', room, ptype: 'subscriber', streams: feeds.map((feed) => ({ feed })) },
        });
      },
      onmessage: (msg, jsep) => {
        if (msg.error_code) window.SB.multi.error = `${msg.error_code} ${msg.error}`;
        if (msg.streams) window.SB.multi.streams = msg.streams;
        if (!jsep) return;
        handle.createAnswer({
          jsep,
          tracks: [],
          success: (answer) => handle.send({ message: { request: 'start', room }, jsep: answer }),
          error: (e) => {
            window.SB.multi.error = `createAnswer: ${e}`;
          },
        });
      },
    });
    setInterval(async () => {
      if (!handle || !handle.webrtcStuff || !handle.webrtcStuff.pc) return;
      const stats = await handle.webrtcStuff.pc.getStats();
      stats.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') window.SB.multi.videos[s.mid] = s.framesDecoded || 0;
      });
    }, 250);
  };

  function subscribe(janus, room, me, feed) {
    if (window.SB.received[feed]) return;
    window.SB.received[feed] = { frames: 0, bytes: 0, tracks: 0 };
    let handle = null;
    janus.attach({
      plugin: 'janus.plugin.videoroom',
      success: (h) => {
        handle = h;
        // The legacy single-feed form the QuickBlox client uses.
        handle.send({ message: { request: 'join', room, ptype: 'subscriber', feed, display: me.name } });
      },
      onmessage: (msg, jsep) => {
        if (msg.error_code) log(`subscribe ${feed}: ${msg.error_code} ${msg.error}`);
        if (!jsep) return;
        handle.createAnswer({
          jsep,
          tracks: [],
          success: (answer) => handle.send({ message: { request: 'start', room }, jsep: answer }),
          error: (e) => log(`createAnswer ${feed}: ${e}`),
        });
      },
      onremotetrack: (track, mid, on) => {
        if (on) window.SB.received[feed].tracks += 1;
      },
    });
    const poll = setInterval(async () => {
      if (!handle || !handle.webrtcStuff || !handle.webrtcStuff.pc) return;
      const stats = await handle.webrtcStuff.pc.getStats();
      stats.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') {
          window.SB.received[feed].frames = s.framesDecoded || 0;
          window.SB.received[feed].bytes = s.bytesReceived || 0;
          window.SB.received[feed].size = `${s.frameWidth}x${s.frameHeight}`;
        }
      });
    }, 250);
    window.SB.polls = (window.SB.polls || []).concat([poll]);
  }
}

async function main() {
  let step = 'browser';
  try {
    const base = await serve({ '/adapter.js': ADAPTER_JS, '/janus.js': JANUS_JS }, harness);
    await launch();
    out(`STEP ${step} ok`);

    step = 'join';
    for (const user of USERS) {
      const p = await openPage(user.name, base, ['adapter.js', 'janus.js', 'harness.js']);
      await p.page.evaluate(
        (url, room, me) => window.SB.start(url, room, me),
        `${JANUS_URL}?token=${user.token}`, ROOM, user,
      );
      const state = await p.page.evaluate(() => ({ error: window.SB.error, joined: window.SB.joined }));
      if (state.error || state.joined !== user.id) throw new Error(`${user.name}: ${JSON.stringify(state)}`);
    }
    out(`STEP ${step} ok`);

    step = 'decode';
    for (const p of state.pages) {
      const user = USERS.find((u) => u.name === p.name);
      const others = USERS.filter((u) => u.id !== user.id).map((u) => u.id);
      const first = await waitFor(`${p.name} decoding ${others}`, async () => {
        const got = await p.page.evaluate(() => window.SB.received);
        return others.every((id) => got[id] && got[id].frames >= 10) ? got : null;
      });
      // Bytes keep rising: media flows, not a single burst.
      await new Promise((r) => setTimeout(r, 1500));
      const later = await p.page.evaluate(() => window.SB.received);
      for (const id of others) {
        if (!(later[id].bytes > first[id].bytes)) throw new Error(`${p.name}: bytes from ${id} stopped`);
      }
      out(`${p.name} decoded ${JSON.stringify(later)}`);
    }
    out(`STEP ${step} ok`);

    step = 'multistream';
    {
      const p = state.pages[0];
      const feeds = USERS.slice(1).map((u) => u.id);
      await p.page.evaluate((room, f) => window.SB.multistream(room, f), ROOM, feeds);
      const multi = await waitFor('two videos on one multistream PeerConnection', async () => {
        const m = await p.page.evaluate(() => window.SB.multi);
        if (m.error) throw new Error(m.error);
        const decoding = Object.values(m.videos).filter((n) => n >= 10).length;
        return decoding >= 2 ? m : null;
      });
      const fromFeeds = new Set(multi.streams.map((st) => st.feed_id));
      if (!feeds.every((f) => fromFeeds.has(f))) throw new Error(`streams ${JSON.stringify(multi.streams)}`);
      out(`${p.name} multistream decoded ${JSON.stringify(multi.videos)}`);
    }
    out(`STEP ${step} ok`);

    step = 'outsider';
    const o = await openPage(OUTSIDER.name, base, ['adapter.js', 'janus.js', 'harness.js']);
    await o.page.evaluate((url, room, me) => window.SB.start(url, room, me), `${JANUS_URL}?token=${OUTSIDER.token}`, ROOM, OUTSIDER);
    const refused = await o.page.evaluate(() => window.SB.errorCode);
    if (refused !== 433) throw new Error(`the outsider got ${JSON.stringify(refused)}, not 433`);
    out(`STEP ${step} ok`);
    out('ALL OK');
    await finish(0);
  } catch (e) {
    out(`FAIL ${step}: ${e && e.stack ? e.stack : e}`);
    await finish(1);
  }
}

deadline(GLOBAL_TIMEOUT_MS);
main();
