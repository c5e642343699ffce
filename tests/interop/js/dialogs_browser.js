#!/usr/bin/env node
// Drives the Chat REST API (/chat/Dialog, /chat/Message) and the group chat
// (XEP-0045 rooms on muc.{domain}) of the real QuickBlox JS SDK (npm
// quickblox@2.23.0, its browser bundle) in headless Chromium against a
// Switchboard server. Two pages = two users, A and B. Same page setup,
// environment and output conventions as chat_browser.js (which this script
// copies its plumbing from; chat_browser.js itself is left untouched).
//
// Env (set by the Rust harness):
//   SB_API          host:port of the HTTPS REST API (no scheme)
//   SB_DOMAIN       XMPP domain (= QB endpoints.chat; rooms live on muc.SB_DOMAIN)
//   SB_WS_URL       XMPP WebSocket URL, e.g. ws://127.0.0.1:PORT/
//   SB_APP_ID, SB_AUTH_KEY, SB_AUTH_SECRET, SB_ACCOUNT_KEY
//   SB_USERS        JSON list of (at least) 2 users, A first:
//                   [{"id":7,"login":"a","password":"..."},{"id":8,...}]
// Optional:
//   SB_TRACE_WS=1   print every WebSocket frame of both pages to stderr
//   SB_QB_DEBUG=1   SDK debug logging (debug.mode 1) into the page console
//   SWITCHBOARD_CHROMIUM  browser binary (default /usr/bin/chromium)
//
// Output on stdout: `STEP <name> ok` per step, then `ALL OK` and exit 0; or
// `FAIL <name>: <details>` and exit 1. Diagnostics (page console errors,
// failed requests, the last WebSocket frames) go to stderr on failure.
//
// Steps: browser, connect, group_create, group_join, group_messages, history,
// unread, read, private_by_message, leave, remove_occupant, delete,
// no_page_errors.
//
// SDK 2.23.0 signatures used (src/modules/chat/qbDialog.js, qbMessage.js,
// qbChat.js; the bundle quickblox.js is the same code):
//   QB.chat.dialog.create(params, cb(err, dialog))      POST form, occupants_ids joined ", "
//   QB.chat.dialog.list([params,] cb(err, {items,…}))   GET
//   QB.chat.dialog.update(id, params, cb(err, dialog))  PUT JSON
//   QB.chat.dialog.delete(ids, {force:1}, cb(err))      DELETE /chat/Dialog/{ids}.json, body force=1 (text)
//   QB.chat.message.list(params, cb(err, {items,…}))    GET
//   QB.chat.message.update(id, params, cb(err))         PUT form (text)
//   QB.chat.message.unreadCount({chat_dialog_ids}, cb(err, {total, <id>: n}))
//   QB.chat.muc.join(dialogIdOrJid, cb(err, {dialogId}))   the callback must take 2
//       parameters: with 1 the SDK hands it the raw presence stanza instead.
//   QB.chat.muc.leave(roomJid, cb(err, {dialogId}))     takes the room JID (not a dialog id):
//       it deletes joinedRooms[roomJid] and waits for the unavailable self-presence from roomJid/<myId>.
//   QB.chat.muc.listOnlineUsers(roomJid, cb(userIds))   one argument, called only on an iq result.
//   QB.chat.sendReadStatus({messageId, userId, dialogId})  returns nothing; a type=chat
//       <displayed/> marker to userId's JID.
//   QB.chat.send(jid, message) returns the message (stanza) id.
//   Listeners: onJoinOccupant(dialogId, userId), onLeaveOccupant(dialogId, userId),
//   onKickOccupant(dialogId, actorUserId), onReadStatusListener(messageId, dialogId, userId).
'use strict';

const http = require('http');
const fs = require('fs');
const os = require('os');
const path = require('path');

const GLOBAL_TIMEOUT_MS = 150000;
const EVENT_TIMEOUT_MS = 10000;
const POLL_TRIES = 20;
const POLL_INTERVAL_MS = 250;

const out = (line) => process.stdout.write(line + '\n');
const err = (line) => process.stderr.write(line + '\n');

let currentStep = 'startup';
let finished = false;
let browser = null;
let server = null;
let userDataDir = null;
const pages = {}; // name -> {page, frames, consoleLines}

function fmt(v) {
  if (typeof v === 'string') return v;
  try {
    return JSON.stringify(v, (k, x) => (x === undefined ? '<undefined>' : x));
  } catch (e) {
    return require('util').inspect(v, { depth: 6, breakLength: Infinity });
  }
}

class StepError extends Error {}

function check(cond, msg, obj) {
  if (!cond) throw new StepError(obj === undefined ? msg : `${msg}; got ${fmt(obj)}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const HEX24 = /^[0-9a-f]{24}$/;
const sameIds = (a, b) => Array.isArray(a) && a.length === b.length
  && [...a].sort((x, y) => x - y).every((v, i) => v === [...b].sort((x, y) => x - y)[i]);

async function cleanup() {
  const b = browser;
  browser = null;
  if (b) await Promise.race([b.close().catch(() => {}), sleep(5000)]);
  if (server) server.close();
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
}

function dumpDiagnostics() {
  for (const [name, p] of Object.entries(pages)) {
    err(`--- page ${name}: console errors / page errors / failed requests (${p.consoleLines.length})`);
    for (const l of p.consoleLines) err(`  ${l}`);
    const last = p.frames.slice(-40);
    err(`--- page ${name}: last ${last.length} of ${p.frames.length} WebSocket frames (> sent, < received)`);
    for (const f of last) err(`  ${f.dir} ${f.data}`);
  }
}

async function fail(step, details) {
  if (finished) return;
  finished = true;
  out(`FAIL ${step}: ${details}`);
  try {
    dumpDiagnostics();
  } catch (e) {
    err(`diagnostics failed: ${e}`);
  }
  await cleanup();
  process.exit(1);
}

const timer = setTimeout(
  () => fail('timeout', `global ${GLOBAL_TIMEOUT_MS} ms timeout hit during step '${currentStep}'`),
  GLOBAL_TIMEOUT_MS,
);

process.on('unhandledRejection', (e) => fail(currentStep, `unhandled rejection: ${fmt(String(e && e.stack || e))}`));
process.on('uncaughtException', (e) => fail(currentStep, `uncaught exception: ${fmt(String(e && e.stack || e))}`));

async function step(name, fn) {
  if (finished) return;
  currentStep = name;
  try {
    await fn();
  } catch (e) {
    if (e instanceof StepError) await fail(name, e.message);
    else await fail(name, `exception ${e && e.stack ? e.stack : fmt(e)}`);
    return;
  }
  out(`STEP ${name} ok`);
}

// --- configuration ---------------------------------------------------------

function env(name) {
  const v = process.env[name];
  if (v === undefined || v === '') {
    out(`FAIL config: environment variable ${name} is not set`);
    process.exit(1);
  }
  return v;
}

const CFG = {
  api: env('SB_API'),
  domain: env('SB_DOMAIN'),
  wsUrl: env('SB_WS_URL'),
  appId: /^\d+$/.test(env('SB_APP_ID')) ? Number(env('SB_APP_ID')) : env('SB_APP_ID'),
  authKey: env('SB_AUTH_KEY'),
  authSecret: env('SB_AUTH_SECRET'),
  accountKey: env('SB_ACCOUNT_KEY'),
  debug: process.env.SB_QB_DEBUG === '1',
};
let USERS;
try {
  USERS = JSON.parse(env('SB_USERS'));
} catch (e) {
  out(`FAIL config: SB_USERS is not JSON: ${e.message}`);
  process.exit(1);
}
if (!Array.isArray(USERS) || USERS.length < 2 || !USERS.slice(0, 2).every((u) => u && typeof u.id === 'number' && u.login && u.password)) {
  out(`FAIL config: SB_USERS must list 2 users {id:number, login, password}; got ${fmt(USERS)}`);
  process.exit(1);
}
const [UA, UB] = USERS;
const TRACE_WS = process.env.SB_TRACE_WS === '1';
const CHROMIUM = process.env.SWITCHBOARD_CHROMIUM || '/usr/bin/chromium';
const BUNDLE = path.join(__dirname, 'node_modules', 'quickblox', 'quickblox.js');

// --- the in-page harness (runs in Chromium, serialised with toString) -------
// window.H wraps the SDK: every listener records an event into H.events;
// the async methods resolve with {err, res} (or {timeout}/{thrown}) instead
// of rejecting, so the Node side sees the SDK's own error objects and no
// call can hang the page.

function pageHarness() {
  const H = (window.H = { events: [] });

  function record(kind, data) {
    H.events.push(Object.assign({ kind, t: Date.now() }, data));
  }
  // SDK objects may hold DOM nodes (message.delay, raw stanzas) and Error objects.
  function plain(v) {
    return JSON.parse(JSON.stringify(v === undefined ? null : v, (k, x) => {
      if (x instanceof Node) return x.outerHTML || String(x);
      if (x instanceof Error) return { name: x.name, message: x.message };
      return x === undefined ? '<undefined>' : x;
    }));
  }

  H.init = function (cfg) {
    QB.init(cfg.appId, cfg.authKey, cfg.authSecret, cfg.accountKey, {
      endpoints: { api: cfg.api, chat: cfg.domain },
      chatProtocol: { websocket: cfg.wsUrl },
      streamManagement: { enable: true },
      debug: { mode: cfg.debug ? 1 : 0 },
    });
    const chat = QB.chat;
    chat.onMessageListener = (userId, msg) => record('message', { userId, msg: plain(msg) });
    chat.onDeliveredStatusListener = (messageId, dialogId, userId) => record('delivered', { messageId, dialogId, userId });
    chat.onReadStatusListener = (messageId, dialogId, userId) => record('read', { messageId, dialogId, userId });
    chat.onSystemMessageListener = (msg) => record('system', { msg: plain(msg) });
    chat.onMessageErrorListener = (messageId, error) => record('messageError', { messageId, error: plain(error) });
    chat.onJoinOccupant = (dialogId, userId) => record('joinOccupant', { dialogId, userId });
    chat.onLeaveOccupant = (dialogId, userId) => record('leaveOccupant', { dialogId, userId });
    chat.onKickOccupant = (dialogId, initiatorUserId) => record('kickOccupant', { dialogId, initiatorUserId });
    chat.onDisconnectedListener = () => record('disconnected', {});
    chat.onReconnectListener = () => record('reconnect', {});
    return { version: QB.version || null, muc: QB.chat.helpers.getRoomJidFromDialogId('x') };
  };

  // Calls QB.<fnPath>(...args, callback(err, res)). The callback is declared
  // with two parameters on purpose: muc.join hands a 1-parameter callback the
  // raw stanza instead of (err, res).
  H.call = (fnPath, args, timeoutMs) => new Promise((resolve) => {
    const parts = fnPath.split('.');
    let obj = QB;
    for (const p of parts.slice(0, -1)) obj = obj[p];
    const fn = obj[parts[parts.length - 1]];
    const timer = setTimeout(() => resolve({ timeout: true }), timeoutMs);
    try {
      fn.call(obj, ...args, function (err, res) {
        clearTimeout(timer);
        resolve({ err: plain(err), res: plain(res) });
      });
    } catch (e) {
      clearTimeout(timer);
      resolve({ thrown: String(e && e.stack || e) });
    }
  });

  // listOnlineUsers calls back with one argument (the user ids) and only on a result.
  H.listOnlineUsers = (roomJid, timeoutMs) => new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ timeout: true }), timeoutMs);
    try {
      QB.chat.muc.listOnlineUsers(roomJid, (users) => {
        clearTimeout(timer);
        resolve({ users: plain(users) });
      });
    } catch (e) {
      clearTimeout(timer);
      resolve({ thrown: String(e && e.stack || e) });
    }
  });

  H.createSession = (login, password) => new Promise((resolve) => {
    QB.createSession({ login, password }, (err, session) => resolve({ err: plain(err), session: plain(session) }));
  });

  H.connect = (userId, password) => new Promise((resolve) => {
    QB.chat.connect({ userId, password }, (err, roster) => resolve({ err: plain(err), roster: plain(roster) }));
  });

  H.userJid = (userId, appId) => QB.chat.helpers.getUserJid(userId, appId);
  H.roomJid = (dialogId) => QB.chat.helpers.getRoomJidFromDialogId(dialogId);
  H.joinedRooms = () => Object.keys(QB.chat.muc.joinedRooms);
  H.send = (to, message) => QB.chat.send(to, message);
  H.sendReadStatus = (params) => QB.chat.sendReadStatus(params);
  H.isConnected = () => QB.chat.isConnected;
  H.mark = () => H.events.length;
}

const PAGE_HTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>switchboard dialogs interop</title>
<script src="/quickblox.js"></script>
<script src="/harness.js"></script>
</head><body>dialogs interop</body></html>`;

// --- static HTTP server ----------------------------------------------------

function startServer() {
  const harness = `'use strict';\n(${pageHarness.toString()})();\n`;
  return new Promise((resolve, reject) => {
    const srv = http.createServer((req, res) => {
      const url = req.url.split('?')[0];
      if (url === '/' || url === '/index.html') {
        res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
        res.end(PAGE_HTML);
      } else if (url === '/quickblox.js') {
        res.writeHead(200, { 'Content-Type': 'application/javascript; charset=utf-8' });
        fs.createReadStream(BUNDLE).pipe(res);
      } else if (url === '/harness.js') {
        res.writeHead(200, { 'Content-Type': 'application/javascript; charset=utf-8' });
        res.end(harness);
      } else if (url === '/favicon.ico') {
        res.writeHead(204);
        res.end();
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => resolve(srv));
  });
}

// --- pages -----------------------------------------------------------------

async function openPage(name, baseUrl) {
  const page = await browser.newPage();
  const p = { name, page, frames: [], consoleLines: [] };
  pages[name] = p;
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warn' || m.type() === 'warning') {
      p.consoleLines.push(`console.${m.type()}: ${m.text()}`);
    }
    if (CFG.debug) err(`[${name} console.${m.type()}] ${m.text()}`);
  });
  page.on('pageerror', (e) => p.consoleLines.push(`pageerror: ${e && e.stack ? e.stack : e}`));
  page.on('requestfailed', (r) => p.consoleLines.push(`requestfailed: ${r.method()} ${r.url()} ${r.failure() && r.failure().errorText}`));

  // WebSocket frames through the DevTools protocol.
  const cdp = await page.createCDPSession();
  await cdp.send('Network.enable');
  const note = (dir, data) => {
    p.frames.push({ dir, data, t: Date.now() });
    if (TRACE_WS) err(`[${name} ws] ${dir} ${data}`);
  };
  cdp.on('Network.webSocketCreated', (e) => note('*', `created ${e.url}`));
  cdp.on('Network.webSocketHandshakeResponseReceived', (e) => {
    const h = e.response.headers || {};
    const proto = h['Sec-WebSocket-Protocol'] || h['sec-websocket-protocol'];
    note('*', `handshake ${e.response.status} subprotocol=${proto}`);
  });
  cdp.on('Network.webSocketFrameSent', (e) => note('>', e.response.payloadData));
  cdp.on('Network.webSocketFrameReceived', (e) => note('<', e.response.payloadData));
  cdp.on('Network.webSocketFrameError', (e) => note('!', `frame error ${e.errorMessage}`));
  cdp.on('Network.webSocketClosed', () => note('*', 'closed'));

  const resp = await page.goto(baseUrl, { waitUntil: 'load' });
  if (!resp || !resp.ok()) throw new StepError(`page ${name}: loading ${baseUrl} failed`);
  const ready = await page.evaluate(() => typeof window.QB === 'object' && typeof window.H === 'object');
  if (!ready) throw new StepError(`page ${name}: QB bundle or harness did not load`);
  return p;
}

// Runs `fn(H, ...args)` in the page.
function inPage(p, fn, ...args) {
  return p.page.evaluate(new Function('args', `return (${fn.toString()})(window.H, ...args);`), args);
}

// Waits for an event of `kind` in page `p` matching `pred`, among the events
// recorded from index `since` on; on timeout the error lists the events of
// that kind that did arrive.
async function waitEvent(p, kind, pred, what, since = 0, timeoutMs = EVENT_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const evs = await p.page.evaluate((k, s) => window.H.events.slice(s).filter((e) => e.kind === k), kind, since);
    const hit = evs.find(pred);
    if (hit) return hit;
    if (Date.now() > deadline) {
      throw new StepError(`${p.name}: no ${kind} event ${what} within ${timeoutMs} ms; ${kind} events seen: ${fmt(evs)}`);
    }
    await sleep(50);
  }
}

async function events(p, kind, since = 0) {
  return p.page.evaluate((k, s) => window.H.events.slice(s).filter((e) => e.kind === k), kind, since);
}

const mark = (p) => inPage(p, (H) => H.mark());

function describeCall(fnPath, args) {
  return `QB.${fnPath}(${fmt(args).slice(1, -1)})`;
}

// QB.<fnPath>(...args, cb) in page p; returns {err, res}; throws on timeout/throw.
async function sdkCall(p, fnPath, ...args) {
  const r = await inPage(p, (H, f, a, ms) => H.call(f, a, ms), fnPath, args, EVENT_TIMEOUT_MS);
  check(!r.thrown, `${p.name}: ${describeCall(fnPath, args)} threw: ${r.thrown}`);
  check(!r.timeout, `${p.name}: ${describeCall(fnPath, args)}: callback not called within ${EVENT_TIMEOUT_MS} ms`);
  return r;
}

// Same, but the call must succeed; returns the result.
async function sdkOk(p, fnPath, ...args) {
  const r = await sdkCall(p, fnPath, ...args);
  check(!r.err, `${p.name}: ${describeCall(fnPath, args)} failed`, r.err);
  return r.res;
}

// --- the scenario ----------------------------------------------------------

async function main() {
  let puppeteer;
  try {
    puppeteer = require('puppeteer-core');
  } catch (e) {
    return fail('config', `cannot load puppeteer-core (run npm ci in ${__dirname}): ${e.message}`);
  }
  if (!fs.existsSync(BUNDLE)) return fail('config', `SDK browser bundle ${BUNDLE} missing (run npm ci in ${__dirname})`);
  if (!fs.existsSync(CHROMIUM)) return fail('config', `no browser at ${CHROMIUM} (set SWITCHBOARD_CHROMIUM)`);

  let A, B;

  await step('browser', async () => {
    server = await startServer();
    const baseUrl = `http://127.0.0.1:${server.address().port}/`;
    userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-chromium-'));
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      acceptInsecureCerts: true,
      userDataDir,
      args: [
        '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        '--ignore-certificate-errors',
      ],
    });
    A = await openPage('A', baseUrl);
    B = await openPage('B', baseUrl);
    for (const p of [A, B]) {
      const info = await inPage(p, (H, cfg) => H.init(cfg), CFG);
      check(info && info.version === '2.23.0', `page ${p.name}: QB.version is not 2.23.0`, info);
      check(info.muc === `${CFG.appId}_x@muc.${CFG.domain}`, `page ${p.name}: SDK room JIDs are not on muc.${CFG.domain}`, info);
    }
  });

  await step('connect', async () => {
    for (const [p, u] of [[A, UA], [B, UB]]) {
      const r = await inPage(p, (H, login, pw) => H.createSession(login, pw), u.login, u.password);
      check(!r.err, `${p.name}: QB.createSession({login:${u.login}}) failed`, r.err);
      check(r.session && typeof r.session.token === 'string' && r.session.token.length > 0,
        `${p.name}: session has no token`, r.session);
      check(r.session.user_id === u.id, `${p.name}: session.user_id !== ${u.id}`, r.session);
      const c = await inPage(p, (H, id, pw) => H.connect(id, pw), u.id, r.session.token);
      check(!c.err, `${p.name}: QB.chat.connect failed`, c.err);
      check(await inPage(p, (H) => H.isConnected()) === true, `${p.name}: QB.chat.isConnected is not true after connect`);
    }
  });

  let dialogId, roomJid;
  await step('group_create', async () => {
    const params = { type: 2, name: 'Team', occupants_ids: [UB.id] };
    const d = await sdkOk(A, 'chat.dialog.create', params);
    check(d && typeof d === 'object' && !d.dialog, 'dialog.create result is not an unwrapped dialog object', d);
    check(typeof d._id === 'string' && HEX24.test(d._id), 'dialog._id is not 24 hex', d);
    dialogId = d._id;
    check(d.type === 2, 'dialog.type !== 2 (number)', d);
    check(d.name === 'Team', 'dialog.name !== Team', d);
    check(Array.isArray(d.occupants_ids) && d.occupants_ids.includes(UA.id) && d.occupants_ids.includes(UB.id),
      `dialog.occupants_ids does not hold both ${UA.id} (creator) and ${UB.id} (numbers)`, d);
    roomJid = `${CFG.appId}_${dialogId}@muc.${CFG.domain}`;
    check(d.xmpp_room_jid === roomJid, `dialog.xmpp_room_jid !== ${roomJid}`, d);
    const sdkRoom = await inPage(A, (H, id) => H.roomJid(id), dialogId);
    check(sdkRoom === roomJid, 'SDK getRoomJidFromDialogId disagrees with xmpp_room_jid', sdkRoom);
    check(d.unread_messages_count === 0, 'dialog.unread_messages_count !== 0', d);
    check(d.user_id === UA.id, `dialog.user_id !== ${UA.id}`, d);
  });

  await step('group_join', async () => {
    // muc.join accepts a dialog id or a room JID (helpers.getDialogJid): A uses
    // the dialog id, B the room JID, so both forms are exercised.
    const r = await sdkCall(A, 'chat.muc.join', dialogId);
    check(!r.err, `A: QB.chat.muc.join(${dialogId}) called back with an error`, r.err);
    check(r.res && r.res.dialogId === dialogId, `A: join callback result is not {dialogId:${dialogId}}`
      + ' (the self-presence must echo the join id and have status 110 first)', r.res);
    const markA = await mark(A);
    const rb = await sdkCall(B, 'chat.muc.join', roomJid);
    check(!rb.err, `B: QB.chat.muc.join(${roomJid}) called back with an error`, rb.err);
    check(rb.res && rb.res.dialogId === dialogId, `B: join callback result is not {dialogId:${dialogId}}`, rb.res);
    const ev = await waitEvent(A, 'joinOccupant', (e) => e.userId === UB.id,
      `for B (${UB.id}) (occupant presence from room/${UB.id} with muc#user <x>, no <status>)`, markA);
    check(ev.dialogId === dialogId, `A: onJoinOccupant dialogId !== ${dialogId}`, ev);
    // B learns about the existing occupant A from the presences sent before its self-presence.
    const evB = await waitEvent(B, 'joinOccupant', (e) => e.userId === UA.id,
      `for the existing occupant A (${UA.id}), sent to B on join`);
    check(evB.dialogId === dialogId, `B: onJoinOccupant dialogId !== ${dialogId}`, evB);
    const lo = await inPage(A, (H, jid, ms) => H.listOnlineUsers(jid, ms), roomJid, EVENT_TIMEOUT_MS);
    check(!lo.thrown, `A: QB.chat.muc.listOnlineUsers(${roomJid}) threw: ${lo.thrown}`);
    check(!lo.timeout, `A: QB.chat.muc.listOnlineUsers(${roomJid}): no disco#items result within ${EVENT_TIMEOUT_MS} ms`);
    check(sameIds(lo.users, [UA.id, UB.id]), `A: listOnlineUsers !== [${UA.id}, ${UB.id}]`, lo.users);
  });

  const sentA = []; // {id, body}
  let sentB = null;
  const groupMessage = (body) => ({
    type: 'groupchat', body, extension: { save_to_history: 1, dialog_id: dialogId }, markable: 1,
  });
  function checkGroupMessage(ev, fromUser, id, body, who) {
    const m = ev.msg;
    check(ev.userId === fromUser.id, `${who}: onMessageListener userId !== ${fromUser.id} (from must be room/${fromUser.id})`, ev);
    check(m.type === 'groupchat', `${who}: message.type !== groupchat`, m);
    check(m.body === body, `${who}: message.body !== ${fmt(body)}`, m);
    check(m.dialog_id === dialogId, `${who}: message.dialog_id !== ${dialogId}`, m);
    check(m.extension && m.extension.dialog_id === dialogId, `${who}: extension.dialog_id !== ${dialogId}`, m);
    check(m.extension.save_to_history === '1', `${who}: extension.save_to_history !== "1"`, m);
    const ds = m.extension.date_sent;
    const mid = m.extension.message_id;
    check((typeof ds === 'string' && /^\d+(\.\d+)?$/.test(ds)) || mid === id,
      `${who}: extension has neither a numeric date_sent nor message_id === ${id} (server must add them)`, m);
    if (mid !== undefined) check(mid === id, `${who}: extension.message_id !== ${id}`, m);
    check(m.markable === 1, `${who}: message.markable !== 1`, m);
    check(!Object.keys(m.extension).some((k) => k === 'undefined' || k === '<undefined>'),
      `${who}: extension has a bogus key (whitespace between extraParams children?)`, m);
    check(!m.delay, `${who}: live groupchat message carries <delay>`, m);
  }

  await step('group_messages', async () => {
    const markB = await mark(B);
    for (let i = 1; i <= 3; i++) {
      const body = `team msg ${i} <&>`;
      const id = await inPage(A, (H, jid, m) => H.send(jid, m), roomJid, groupMessage(body));
      check(typeof id === 'string' && HEX24.test(id), 'QB.chat.send did not return a 24-hex id', id);
      sentA.push({ id, body });
    }
    for (const { id, body } of sentA) {
      const ev = await waitEvent(B, 'message', (e) => e.msg && e.msg.id === id, `for A's group message ${id}`);
      checkGroupMessage(ev, UA, id, body, 'B');
      const own = await waitEvent(A, 'message', (e) => e.msg && e.msg.id === id,
        `for A's own group message ${id} reflected by the room`);
      checkGroupMessage(own, UA, id, body, 'A (reflection)');
    }
    const order = (await events(B, 'message', markB)).map((e) => e.msg.id).filter((x) => sentA.some((s) => s.id === x));
    check(fmt(order) === fmt(sentA.map((s) => s.id)), 'B received A\'s group messages out of order or duplicated',
      { expected: sentA.map((s) => s.id), got: order });

    const body = 'from b';
    const id = await inPage(B, (H, jid, m) => H.send(jid, m), roomJid, groupMessage(body));
    check(typeof id === 'string' && HEX24.test(id), 'QB.chat.send (B) did not return a 24-hex id', id);
    sentB = { id, body };
    const ev = await waitEvent(A, 'message', (e) => e.msg && e.msg.id === id, `for B's group message ${id}`);
    checkGroupMessage(ev, UB, id, body, 'A');
    const own = await waitEvent(B, 'message', (e) => e.msg && e.msg.id === id, `for B's own group message ${id} reflected`);
    checkGroupMessage(own, UB, id, body, 'B (reflection)');
  });

  const listParams = () => ({ chat_dialog_id: dialogId, sort_asc: 'date_sent', mark_as_read: 0 });

  await step('history', async () => {
    const r = await sdkOk(B, 'chat.message.list', listParams());
    check(r && Array.isArray(r.items), 'message.list result has no items array', r);
    const expected = sentA.map((s) => ({ ...s, sender: UA.id })).concat([{ ...sentB, sender: UB.id }]);
    check(r.items.length === expected.length, `message.list returned ${r.items.length} messages, expected ${expected.length}`
      + ` (ids ${fmt(expected.map((e) => e.id))})`, r.items);
    expected.forEach((e, i) => {
      const m = r.items[i];
      const what = `message.list items[${i}]`;
      check(m._id === e.id, `${what}._id !== ${e.id} (the SDK's stanza id; order must be date_sent asc, then storage order)`,
        r.items.map((x) => ({ _id: x._id, message: x.message, date_sent: x.date_sent })));
      check(m.sender_id === e.sender, `${what}.sender_id !== ${e.sender}`, m);
      check(m.message === e.body, `${what}.message !== ${fmt(e.body)}`, m);
      check(m.chat_dialog_id === dialogId, `${what}.chat_dialog_id !== ${dialogId}`, m);
      check(typeof m.date_sent === 'number' && Number.isInteger(m.date_sent), `${what}.date_sent is not integer seconds`, m);
      if (e.sender === UA.id) {
        check(!(m.read_ids || []).includes(UB.id), `${what}.read_ids already contains B (mark_as_read=0 ignored?)`, m);
      }
    });
  });

  await step('unread', async () => {
    const u = await sdkOk(B, 'chat.message.unreadCount', { chat_dialog_ids: [dialogId] });
    check(u && u.total === 3 && u[dialogId] === 3, `B: unreadCount !== {total: 3, "${dialogId}": 3}`, u);
    const l = await sdkOk(B, 'chat.dialog.list');
    check(l && Array.isArray(l.items), 'B: dialog.list result has no items array', l);
    const d = l.items.find((x) => x && x._id === dialogId);
    check(d, `B: dialog.list does not contain ${dialogId}`, l.items.map((x) => x && x._id));
    check(d.unread_messages_count === 3, 'B: dialog.unread_messages_count !== 3', d);
    check(d.last_message === sentB.body, `B: dialog.last_message !== ${fmt(sentB.body)}`, d);
    check(d.last_message_user_id === UB.id, `B: dialog.last_message_user_id !== ${UB.id}`, d);
    check(typeof d.last_message_date_sent === 'number', 'B: dialog.last_message_date_sent is not a number', d);
    if (d.last_message_id !== undefined && d.last_message_id !== null) {
      check(d.last_message_id === sentB.id, `B: dialog.last_message_id !== ${sentB.id}`, d);
    }
    check(d.xmpp_room_jid === roomJid && d.type === 2, 'B: listed dialog has wrong xmpp_room_jid/type', d);
  });

  await step('read', async () => {
    const markA = await mark(A);
    for (const { id } of sentA) {
      await inPage(B, (H, p) => H.sendReadStatus(p), { messageId: id, userId: UA.id, dialogId });
    }
    for (const { id } of sentA) {
      const ev = await waitEvent(A, 'read', (e) => e.messageId === id, `(displayed marker) for ${id}`, markA);
      check(ev.userId === UB.id, `A: onReadStatusListener userId !== ${UB.id}`, ev);
      check(ev.dialogId === dialogId, `A: onReadStatusListener dialogId !== ${dialogId}`, ev);
    }
    let items = null;
    for (let i = 0; i < POLL_TRIES; i++) {
      const r = await sdkOk(A, 'chat.message.list', listParams());
      items = r && r.items;
      const done = Array.isArray(items) && sentA.every((s) => {
        const m = items.find((x) => x._id === s.id);
        return m && Array.isArray(m.read_ids) && m.read_ids.includes(UB.id);
      });
      if (done) break;
      if (i === POLL_TRIES - 1) {
        throw new StepError(`A's messages do not list B (${UB.id}) in read_ids after ${POLL_TRIES} polls of`
          + ` ${POLL_INTERVAL_MS} ms (displayed markers must update read_ids); got `
          + fmt((items || []).map((x) => ({ _id: x._id, read_ids: x.read_ids }))));
      }
      await sleep(POLL_INTERVAL_MS);
    }
    const u = await sdkOk(B, 'chat.message.unreadCount', { chat_dialog_ids: [dialogId] });
    check(u && u.total === 0 && u[dialogId] === 0, `B: unreadCount after reading !== {total: 0, "${dialogId}": 0}`, u);

    // REST read: A marks B's message read.
    const before = items.find((x) => x._id === sentB.id);
    check(before, `A: message.list lacks B's message ${sentB.id}`, items);
    check(!(before.read_ids || []).includes(UA.id), 'B\'s message lists A in read_ids before A read it', before);
    const ua = await sdkOk(A, 'chat.message.unreadCount', { chat_dialog_ids: [dialogId] });
    check(ua && ua.total === 1 && ua[dialogId] === 1, `A: unreadCount before reading B's message !== {total: 1, "${dialogId}": 1}`, ua);
    await sdkOk(A, 'chat.message.update', sentB.id, { chat_dialog_id: dialogId, read: 1 });
    const r = await sdkOk(B, 'chat.message.list', listParams());
    const after = (r.items || []).find((x) => x._id === sentB.id);
    check(after && Array.isArray(after.read_ids) && after.read_ids.includes(UA.id),
      `B's message ${sentB.id} lacks A (${UA.id}) in read_ids after QB.chat.message.update(read: 1)`, after || r);
    const ua2 = await sdkOk(A, 'chat.message.unreadCount', { chat_dialog_ids: [dialogId] });
    check(ua2 && ua2.total === 0 && ua2[dialogId] === 0, `A: unreadCount after message.update(read:1) !== {total: 0, "${dialogId}": 0}`, ua2);
  });

  await step('private_by_message', async () => {
    const jidB = await inPage(A, (H, id, app) => H.userJid(id, app), UB.id, CFG.appId);
    check(jidB === `${UB.id}-${CFG.appId}@${CFG.domain}`, 'SDK JID of B is not {id}-{appId}@{domain}', jidB);
    const body = 'hi b';
    const id = await inPage(A, (H, jid, m) => H.send(jid, m), jidB,
      { type: 'chat', body, extension: { save_to_history: 1 }, markable: 1 });
    check(typeof id === 'string' && HEX24.test(id), 'QB.chat.send did not return a 24-hex id', id);
    const ev = await waitEvent(B, 'message', (e) => e.msg && e.msg.id === id, `for A's private message ${id}`);
    const m = ev.msg;
    check(ev.userId === UA.id, `B: onMessageListener userId !== ${UA.id}`, ev);
    check(m.type === 'chat' && m.body === body, `B: private message is not type chat with body ${fmt(body)}`, m);
    check(m.extension && typeof m.extension.dialog_id === 'string' && HEX24.test(m.extension.dialog_id),
      'B: the server did not add a 24-hex extension.dialog_id to a save_to_history message without one', m);
    check(m.dialog_id === m.extension.dialog_id, 'B: message.dialog_id !== extension.dialog_id', m);
    check(m.extension.dialog_id !== dialogId, 'B: private message got the group dialog id', m);
    const privId = m.extension.dialog_id;
    const l = await sdkOk(A, 'chat.dialog.list', { type: 3 });
    check(l && Array.isArray(l.items), 'A: dialog.list({type: 3}) result has no items array', l);
    check(l.items.every((x) => x && x.type === 3), 'A: dialog.list({type: 3}) returned a dialog of another type',
      l.items.map((x) => x && { _id: x._id, type: x.type }));
    const d = l.items.find((x) => x._id === privId);
    check(d, `A: dialog.list({type: 3}) lacks the private dialog ${privId}`, l.items);
    check(sameIds(d.occupants_ids, [UA.id, UB.id]), `A: private dialog occupants_ids !== [${UA.id}, ${UB.id}]`, d);
    check(d.last_message === body, `A: private dialog last_message !== ${fmt(body)}`, d);
    check(d.last_message_user_id === UA.id, `A: private dialog last_message_user_id !== ${UA.id}`, d);
  });

  await step('leave', async () => {
    const markA = await mark(A);
    // muc.leave takes the room JID (it deletes joinedRooms[jid] and matches the
    // unavailable self-presence from jid + '/' + myId).
    const r = await sdkCall(B, 'chat.muc.leave', roomJid);
    check(!r.err, `B: QB.chat.muc.leave(${roomJid}) called back with an error`, r.err);
    check(r.res && r.res.dialogId === dialogId, `B: leave callback result is not {dialogId:${dialogId}}`
      + ` (unavailable self-presence from room/${UB.id} with status 110 first)`, r.res);
    const ev = await waitEvent(A, 'leaveOccupant', (e) => e.userId === UB.id,
      `for B (${UB.id}) (unavailable presence from room/${UB.id}, muc#user <x>, no <status>)`, markA);
    check(ev.dialogId === dialogId, `A: onLeaveOccupant dialogId !== ${dialogId}`, ev);
  });

  await step('remove_occupant', async () => {
    const markA = await mark(A);
    const rb = await sdkCall(B, 'chat.muc.join', roomJid);
    check(!rb.err, `B: QB.chat.muc.join(${roomJid}) (re-join) called back with an error`, rb.err);
    check(rb.res && rb.res.dialogId === dialogId, `B: re-join callback result is not {dialogId:${dialogId}}`, rb.res);
    await waitEvent(A, 'joinOccupant', (e) => e.userId === UB.id && e.dialogId === dialogId, `for B re-joining`, markA);

    const markA2 = await mark(A);
    const markB = await mark(B);
    const d = await sdkOk(A, 'chat.dialog.update', dialogId, { pull_all: { occupants_ids: [UB.id] } });
    check(d && d._id === dialogId, `dialog.update result is not the dialog ${dialogId}`, d);
    check(Array.isArray(d.occupants_ids) && !d.occupants_ids.includes(UB.id) && d.occupants_ids.includes(UA.id),
      `dialog.update(pull_all B) occupants_ids must hold ${UA.id} and not ${UB.id}`, d);
    const kick = await waitEvent(B, 'kickOccupant', (e) => e.dialogId === dialogId,
      `for ${dialogId} (presence from room/${UB.id} with muc#user <x> whose first <status> is 301 and`
      + ` <item><actor jid='${UA.id}-${CFG.appId}@${CFG.domain}'/></item>)`, markB);
    check(kick.initiatorUserId === UA.id, `B: onKickOccupant initiator !== ${UA.id} (item/actor@jid)`, kick);
    const joined = await inPage(B, (H) => H.joinedRooms());
    check(!joined.includes(roomJid), 'B: the SDK still lists the room in muc.joinedRooms after the kick', joined);
    const leave = await waitEvent(A, 'leaveOccupant', (e) => e.userId === UB.id,
      `for the removed B (${UB.id}) (plain unavailable presence, no <status>)`, markA2);
    check(leave.dialogId === dialogId, `A: onLeaveOccupant dialogId !== ${dialogId}`, leave);
    const wrongKick = await events(A, 'kickOccupant');
    check(wrongKick.length === 0, 'A got onKickOccupant (the 301 presence must only go to the removed user)', wrongKick);

    const r = await sdkCall(B, 'chat.message.list', listParams());
    check(r.err, `B: message.list for a dialog B was removed from succeeded (expected 403/404)`, r.res);
    check(r.err.code === 403 || r.err.code === 404, 'B: message.list after removal: error code is not 403/404', r.err);
  });

  await step('delete', async () => {
    const r = await sdkCall(A, 'chat.dialog.delete', [dialogId], { force: 1 });
    check(!r.err, `A: QB.chat.dialog.delete([${dialogId}], {force: 1}) failed (DELETE with body force=1, any 200/201/202)`, r.err);
    const l = await sdkOk(A, 'chat.dialog.list');
    check(l && Array.isArray(l.items), 'A: dialog.list result has no items array', l);
    check(!l.items.some((x) => x && x._id === dialogId), `A: dialog.list still lists the deleted dialog ${dialogId}`,
      l.items.map((x) => x && x._id));
  });

  if (finished) return;
  await step('no_page_errors', async () => {
    for (const p of [A, B]) {
      const errs = p.consoleLines.filter((l) => l.startsWith('pageerror'));
      check(errs.length === 0, `${p.name}: uncaught errors in the page`, errs);
      const msgErrs = await events(p, 'messageError');
      check(msgErrs.length === 0, `${p.name}: onMessageErrorListener fired`, msgErrs);
      const bad = (await events(p, 'disconnected')).concat(await events(p, 'reconnect'));
      check(bad.length === 0, `${p.name}: onDisconnectedListener/onReconnectListener fired`, bad);
    }
  });

  if (finished) return;
  currentStep = 'done';
  clearTimeout(timer);
  finished = true;
  await cleanup();
  out('ALL OK');
  process.exit(0);
}

main().catch((e) => fail(currentStep, `exception ${e && e.stack ? e.stack : fmt(e)}`));
