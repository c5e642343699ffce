#!/usr/bin/env node
// Simulcast with a real browser: a Chromium page publishes its camera through janus.js with
// `simulcast: true` (RTP stream ids h/m/l, each a quarter of the pixels of the one above, as
// janus.js asks Chrome for them) into a QuickBlox dialog's conference; a second page
// subscribes with the legacy single-feed form and pins layers with Janus's `configure`
// `substream`: pinned to the top (2) it decodes the largest frames, pinned to the bottom (0)
// smaller ones, and decoding goes on across each switch (the server switches at keyframes).
//
// Env (set by the Rust harness): SB_JANUS_URL, SB_ROOM, SB_USERS (first two used),
// SWITCHBOARD_CHROMIUM. Output: `STEP <name> ok` lines, then `ALL OK` (exit 0), or
// `FAIL <name>: …` (exit 1) with the pages' console lines on stderr.
'use strict';

const { out, state, finish, deadline, serve, launch, openPage, waitFor } = require('./conference_pages');

const JANUS_URL = process.env.SB_JANUS_URL;
const ROOM = process.env.SB_ROOM;
const USERS = JSON.parse(process.env.SB_USERS);
const JANUS_JS = require.resolve('janus-gateway/npm/src/janus.js');
const ADAPTER_JS = require.resolve('webrtc-adapter/out/adapter.js');
const GLOBAL_TIMEOUT_MS = 120000;

function harness() {
  window.SB = { error: null, joined: null, video: null, configured: 0 };

  function connect(url, then) {
    Janus.init({
      debug: ['warn', 'error'],
      callback: () => {
        const janus = new Janus({
          server: url,
          success: () => then(janus),
          error: (e) => {
            window.SB.error = `janus: ${e}`;
          },
        });
      },
    });
  }

  // Publishes the camera as three simulcast layers.
  window.SB.publish = (url, room, me) =>
    new Promise((resolve) => {
      connect(url, (janus) => {
        janus.attach({
          plugin: 'janus.plugin.videoroom',
          success: (handle) => {
            window.SB.handle = handle;
            handle.send({ message: { request: 'join', room, ptype: 'publisher', id: me.id, display: me.name } });
          },
          onmessage: (msg, jsep) => {
            const handle = window.SB.handle;
            if (msg.error_code) window.SB.error = `${msg.error_code} ${msg.error}`;
            if (msg.videoroom === 'joined') {
              window.SB.joined = msg.id;
              handle.createOffer({
                tracks: [
                  { type: 'audio', capture: true, recv: false },
                  { type: 'video', capture: { width: 1280, height: 720 }, recv: false, simulcast: true },
                ],
                success: (offer) => {
                  handle.send({ message: { request: 'configure', audio: true, video: true }, jsep: offer });
                },
                error: (e) => {
                  window.SB.error = `createOffer: ${e}`;
                },
              });
            }
            if (jsep) handle.handleRemoteJsep({ jsep });
            if (msg.configured === 'ok') resolve();
          },
        });
      });
    });

  // Subscribes to `feed` and keeps the decoded video's size and frame count.
  window.SB.subscribe = (url, room, me, feed) => {
    connect(url, (janus) => {
      let handle = null;
      janus.attach({
        plugin: 'janus.plugin.videoroom',
        success: (h) => {
          handle = h;
          window.SB.sub = h;
          handle.send({ message: { request: 'join', room, ptype: 'subscriber', feed, display: me.name } });
        },
        onmessage: (msg, jsep) => {
          if (msg.error_code) window.SB.error = `${msg.error_code} ${msg.error}`;
          if (msg.configured === 'ok') window.SB.configured += 1;
          if (!jsep) return;
          handle.createAnswer({
            jsep,
            tracks: [],
            success: (answer) => handle.send({ message: { request: 'start', room }, jsep: answer }),
            error: (e) => {
              window.SB.error = `createAnswer: ${e}`;
            },
          });
        },
      });
      setInterval(async () => {
        if (!handle || !handle.webrtcStuff || !handle.webrtcStuff.pc) return;
        const stats = await handle.webrtcStuff.pc.getStats();
        stats.forEach((s) => {
          if (s.type === 'inbound-rtp' && s.kind === 'video') {
            window.SB.video = { frames: s.framesDecoded || 0, width: s.frameWidth || 0, height: s.frameHeight || 0 };
          }
        });
      }, 200);
    });
  };

  window.SB.substream = (substream) => window.SB.sub.send({ message: { request: 'configure', substream } });
}

async function main() {
  let step = 'browser';
  try {
    const base = await serve({ '/adapter.js': ADAPTER_JS, '/janus.js': JANUS_JS }, harness);
    await launch();
    out(`STEP ${step} ok`);

    step = 'publish';
    const [publisher, watcher] = USERS;
    const pub = await openPage(publisher.name, base, ['adapter.js', 'janus.js', 'harness.js']);
    await pub.page.evaluate((url, room, me) => window.SB.publish(url, room, me), `${JANUS_URL}?token=${publisher.token}`, ROOM, publisher);
    const published = await pub.page.evaluate(() => window.SB.error);
    if (published) throw new Error(published);
    out(`STEP ${step} ok`);

    step = 'subscribe';
    const sub = await openPage(watcher.name, base, ['adapter.js', 'janus.js', 'harness.js']);
    await sub.page.evaluate(
      (url, room, me, feed) => window.SB.subscribe(url, room, me, feed),
      `${JANUS_URL}?token=${watcher.token}`, ROOM, watcher, publisher.id,
    );
    const video = () => sub.page.evaluate(() => ({ ...window.SB.video, error: window.SB.error, configured: window.SB.configured }));
    await waitFor('the subscriber decoding', async () => {
      const v = await video();
      if (v.error) throw new Error(v.error);
      return v.frames >= 10 ? v : null;
    });
    out(`STEP ${step} ok`);

    // Pins a layer and waits until frames of the expected size decode, still rising.
    const pin = async (substream, accept) => {
      const before = await video();
      await sub.page.evaluate((s) => window.SB.substream(s), substream);
      const got = await waitFor(`substream ${substream}`, async () => {
        const v = await video();
        if (v.error) throw new Error(v.error);
        return v.configured > before.configured && accept(v.width) && v.frames > before.frames + 10 ? v : null;
      });
      out(`substream ${substream}: ${got.width}x${got.height}, ${got.frames} frames decoded`);
      return got;
    };

    step = 'top layer';
    // Chrome may take a few seconds to send its top layer at full size (its own estimate
    // ramps up): wait for the largest width seen to settle.
    let top = await pin(2, (w) => w > 0);
    top = await waitFor('the top layer at full size', async () => {
      const v = await video();
      return v.width >= 640 && v.frames > top.frames + 10 ? v : null;
    });
    out(`top layer ${top.width}x${top.height}`);
    out(`STEP ${step} ok`);

    step = 'bottom layer';
    const bottom = await pin(0, (w) => w > 0 && w < top.width);
    out(`bottom layer ${bottom.width}x${bottom.height}`);
    out(`STEP ${step} ok`);

    step = 'back to top';
    await pin(2, (w) => w > bottom.width);
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
