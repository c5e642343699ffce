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

const path = require('path');

const { out, state, finish, deadline, serve, launch, openPage, waitFor } = require('./conference_pages');

const JANUS_URL = process.env.SB_JANUS_URL;
const ROOM = process.env.SB_ROOM;
const USERS = JSON.parse(process.env.SB_USERS);
const OUTSIDER = JSON.parse(process.env.SB_OUTSIDER);
const CLIENT_JS = path.join(__dirname, 'vendor', 'quickblox-multiparty-video-conferencing-client-0.8.8.min.js');
const ADAPTER_JS = require.resolve('webrtc-adapter/out/adapter.js');
const GLOBAL_TIMEOUT_MS = 120000;

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

async function main() {
  let step = 'browser';
  try {
    const base = await serve({ '/adapter.js': ADAPTER_JS, '/client.js': CLIENT_JS }, harness);
    await launch();
    out(`STEP ${step} ok`);

    step = 'join';
    for (const user of USERS) {
      const p = await openPage(user.name, base, ['adapter.js', 'client.js', 'harness.js']);
      await p.page.evaluate((url, room, me) => window.SB.start(url, room, me), `${JANUS_URL}?token=${user.token}`, ROOM, user);
      const state = await p.page.evaluate(() => ({ joined: window.SB.joined, errors: window.SB.errors }));
      if (!state.joined || state.errors.length) throw new Error(`${user.name}: ${JSON.stringify(state)}`);
    }
    out(`STEP ${step} ok`);

    step = 'play';
    for (const p of state.pages) {
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
    const o = await openPage(OUTSIDER.name, base, ['adapter.js', 'client.js', 'harness.js']);
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
    const [first, ...rest] = state.pages.slice(0, USERS.length);
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

deadline(GLOBAL_TIMEOUT_MS);
main();
