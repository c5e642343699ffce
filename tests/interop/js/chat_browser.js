#!/usr/bin/env node
// Drives the chat of the real QuickBlox JS SDK (npm quickblox@2.23.0, its
// browser bundle) in headless Chromium against an XMPP-over-WebSocket server
// (RFC 7395, subprotocol `xmpp`). Two pages = two users, A and B.
//
// Env (set by the Rust harness):
//   SB_API          host:port of the HTTPS REST API (no scheme)
//   SB_DOMAIN       XMPP domain (= QB endpoints.chat)
//   SB_WS_URL       XMPP WebSocket URL, e.g. ws://127.0.0.1:PORT/
//   SB_APP_ID, SB_AUTH_KEY, SB_AUTH_SECRET, SB_ACCOUNT_KEY
//   SB_USERS        JSON list of (at least) 2 users, A first:
//                   [{"id":7,"login":"a","password":"..."},{"id":8,...}]
// Optional:
//   SB_SKIP_REST=1  no QB.createSession: connect with the user's password
//                   instead of the session token (to validate this script
//                   against a plain XMPP server such as Prosody, which has no
//                   QuickBlox REST; SB_AUTH_*/SB_ACCOUNT_KEY may be dummies).
//   SB_DIALOG_ID    dialog id put into extraParams (default: random 24 hex)
//   SB_TRACE_WS=1   print every WebSocket frame of both pages to stderr
//   SB_QB_DEBUG=1   SDK debug logging (debug.mode 1) into the page console
//   SWITCHBOARD_CHROMIUM  browser binary (default /usr/bin/chromium)
//
// Output on stdout: `STEP <name> ok` per step, then `ALL OK` and exit 0; or
// `FAIL <name>: <details>` and exit 1. Diagnostics (page console errors,
// failed requests, the last WebSocket frames) go to stderr on failure.
//
// Page setup: a static HTTP server on 127.0.0.1:0 serves an empty page, the
// SDK bundle (node_modules/quickblox/quickblox.js, the unminified build of
// the same 2.23.0 code as quickblox.min.js) and the in-page harness below
// (`pageHarness`, window.H). REST calls go from the page (origin
// http://127.0.0.1:PORT) to https://SB_API, so the server must answer CORS
// (preflight included: the SDK sends QB-OS/QB-SDK/QB-Token headers); the
// self-signed certificate is accepted via --ignore-certificate-errors.
'use strict';

const http = require('http');
const fs = require('fs');
const os = require('os');
const path = require('path');
const crypto = require('crypto');

const GLOBAL_TIMEOUT_MS = 120000;
const EVENT_TIMEOUT_MS = 10000;

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

const SKIP_REST = process.env.SB_SKIP_REST === '1';
const CFG = {
  api: SKIP_REST ? (process.env.SB_API || '127.0.0.1:9') : env('SB_API'),
  domain: env('SB_DOMAIN'),
  wsUrl: env('SB_WS_URL'),
  appId: /^\d+$/.test(env('SB_APP_ID')) ? Number(env('SB_APP_ID')) : env('SB_APP_ID'),
  authKey: SKIP_REST ? (process.env.SB_AUTH_KEY || 'unused') : env('SB_AUTH_KEY'),
  authSecret: SKIP_REST ? (process.env.SB_AUTH_SECRET || 'unused') : env('SB_AUTH_SECRET'),
  accountKey: SKIP_REST ? (process.env.SB_ACCOUNT_KEY || 'unused') : env('SB_ACCOUNT_KEY'),
  debug: process.env.SB_QB_DEBUG === '1',
};
let USERS;
try {
  USERS = JSON.parse(env('SB_USERS'));
} catch (e) {
  out(`FAIL config: SB_USERS is not JSON: ${e.message}`);
  process.exit(1);
}
if (!Array.isArray(USERS) || USERS.length < 2 || !USERS.slice(0, 2).every((u) => u && typeof u.id === 'number' && u.password)) {
  out(`FAIL config: SB_USERS must list 2 users {id:number, login, password}; got ${fmt(USERS)}`);
  process.exit(1);
}
const [UA, UB] = USERS;
const DIALOG_ID = process.env.SB_DIALOG_ID || crypto.randomBytes(12).toString('hex');
const TRACE_WS = process.env.SB_TRACE_WS === '1';
const CHROMIUM = process.env.SWITCHBOARD_CHROMIUM || '/usr/bin/chromium';
const BUNDLE = path.join(__dirname, 'node_modules', 'quickblox', 'quickblox.js');

// --- the in-page harness (runs in Chromium, serialised with toString) -------
// window.H wraps the SDK: every listener records an event into H.events;
// the async methods resolve with {err, ...} instead of rejecting, so the Node
// side sees the SDK's own error objects.

function pageHarness() {
  const H = (window.H = { events: [] });

  function record(kind, data) {
    H.events.push(Object.assign({ kind, t: Date.now() }, data));
  }
  // SDK objects may hold DOM nodes (message.delay) and Error objects.
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
    chat.onMessageTypingListener = (isTyping, userId, dialogId) => record('typing', { isTyping, userId, dialogId });
    chat.onSystemMessageListener = (msg) => record('system', { msg: plain(msg) });
    chat.onLastUserActivityListener = (userId, seconds) => record('lastActivity', { userId, seconds: plain(seconds) });
    chat.onMessageErrorListener = (messageId, error) => record('messageError', { messageId, error: plain(error) });
    chat.onSentMessageCallback = (lost, sent) => record('sentMessage', { lost: plain(lost), sent: plain(sent) });
    chat.onDisconnectedListener = () => record('disconnected', {});
    chat.onReconnectListener = () => record('reconnect', {});
    return { version: QB.version || null, wsUrl: cfg.wsUrl };
  };

  H.createSession = (login, password) => new Promise((resolve) => {
    QB.createSession({ login, password }, (err, session) => resolve({ err: plain(err), session: plain(session) }));
  });

  H.connect = (userId, password) => new Promise((resolve) => {
    QB.chat.connect({ userId, password }, (err, roster) => resolve({ err: plain(err), roster: plain(roster) }));
  });

  H.jid = (userId) => QB.chat.helpers.getUserJid(userId);
  H.privacy = (method, ...args) => new Promise((resolve) => {
    QB.chat.privacylist[method](...args, (err) => resolve({ err: plain(err) }));
  });
  H.send = (to, message) => QB.chat.send(to, message);
  H.sendSystemMessage = (to, message) => QB.chat.sendSystemMessage(to, message);
  H.typing = (to, on) => (on ? QB.chat.sendIsTypingStatus(to) : QB.chat.sendIsStopTypingStatus(to));
  H.getLastUserActivity = (userId) => QB.chat.getLastUserActivity(userId);
  H.isConnected = () => QB.chat.isConnected;

  H.ping = () => new Promise((resolve) => {
    const started = Date.now();
    QB.chat.ping((err) => resolve({ err: plain(err), ms: Date.now() - started }));
  });
}

const PAGE_HTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>switchboard chat interop</title>
<script src="/quickblox.js"></script>
<script src="/harness.js"></script>
</head><body>chat interop</body></html>`;

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

// Waits for an event of `kind` in page `p` matching `pred`; on timeout the
// error lists the events of that kind that did arrive.
async function waitEvent(p, kind, pred, what, timeoutMs = EVENT_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const events = await p.page.evaluate((k) => window.H.events.filter((e) => e.kind === k), kind);
    const hit = events.find(pred);
    if (hit) return hit;
    if (Date.now() > deadline) {
      throw new StepError(`${p.name}: no ${kind} event ${what} within ${timeoutMs} ms; ${kind} events seen: ${fmt(events)}`);
    }
    await sleep(50);
  }
}

async function events(p, kind) {
  return p.page.evaluate((k) => window.H.events.filter((e) => e.kind === k), kind);
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
  const sent = {}; // message ids

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
    }
  });

  for (const [name, p, u] of [['connect_a', () => A, UA], ['connect_b', () => B, UB]]) {
    await step(name, async () => {
      const page = p();
      let password = u.password;
      if (!SKIP_REST) {
        const r = await inPage(page, (H, login, pw) => H.createSession(login, pw), u.login, u.password);
        check(!r.err, `QB.createSession({login:${u.login}}) failed`, r.err);
        check(r.session && typeof r.session.token === 'string' && r.session.token.length > 0, 'session has no token', r.session);
        check(r.session.user_id === u.id, `session.user_id !== ${u.id}`, r.session);
        password = r.session.token;
      }
      const c = await inPage(page, (H, id, pw) => H.connect(id, pw), u.id, password);
      check(!c.err, 'QB.chat.connect failed', c.err);
      check(c.roster !== null && typeof c.roster === 'object' && !Array.isArray(c.roster),
        'connect callback did not get a contact list object', c.roster);
      check(await inPage(page, (H) => H.isConnected()) === true, 'QB.chat.isConnected is not true after connect');
      err(`${name}: roster ${fmt(c.roster)}`);
    });
  }

  let jidA, jidB;
  await step('jids', async () => {
    jidA = await inPage(A, (H, id) => H.jid(id), UA.id);
    jidB = await inPage(A, (H, id) => H.jid(id), UB.id);
    check(jidA === `${UA.id}-${CFG.appId}@${CFG.domain}`, 'SDK JID of A is not {id}-{appId}@{domain}', jidA);
    check(jidB === `${UB.id}-${CFG.appId}@${CFG.domain}`, 'SDK JID of B is not {id}-{appId}@{domain}', jidB);
  });

  const BODY = 'hi <&> ü';
  const message = (body) => ({
    type: 'chat', body, extension: { save_to_history: 1, dialog_id: DIALOG_ID }, markable: 1,
  });

  async function checkMessage(from, fromUser, to, toJid, body, key) {
    const id = await inPage(from, (H, jid, m) => H.send(jid, m), toJid, message(body));
    check(typeof id === 'string' && /^[0-9a-f]{24}$/.test(id), 'QB.chat.send did not return a 24-hex id', id);
    sent[key] = id;
    const ev = await waitEvent(to, 'message', (e) => e.msg && e.msg.id === id, `with id ${id}`);
    const m = ev.msg;
    check(ev.userId === fromUser.id, `onMessageListener userId !== ${fromUser.id}`, ev);
    check(m.type === 'chat', 'message.type !== chat', m);
    check(m.body === body, `message.body !== ${fmt(body)}`, m);
    check(m.markable === 1, 'message.markable !== 1', m);
    check(m.dialog_id === DIALOG_ID, `message.dialog_id !== ${DIALOG_ID}`, m);
    check(m.extension && m.extension.dialog_id === DIALOG_ID, 'extension.dialog_id mismatch', m);
    check(m.extension.save_to_history === '1', 'extension.save_to_history !== "1"', m);
    check(!Object.keys(m.extension).some((k) => k === 'undefined' || k === '<undefined>'),
      'extension has a bogus key (whitespace between extraParams children?)', m);
    check(!m.delay, 'live message carries <delay>', m);
  }

  await step('message_a_to_b', () => checkMessage(A, UA, B, jidB, BODY, 'ab'));
  await step('message_b_to_a', () => checkMessage(B, UB, A, jidA, BODY + ' back', 'ba'));

  await step('delivered_marker', async () => {
    // B's SDK sent <received id=…/> for A's markable message on its own.
    const ev = await waitEvent(A, 'delivered', (e) => e.messageId === sent.ab, `for message ${sent.ab}`);
    check(ev.userId === UB.id, `delivered userId !== ${UB.id}`, ev);
    check(ev.dialogId === DIALOG_ID, `delivered dialogId !== ${DIALOG_ID}`, ev);
    const evB = await waitEvent(B, 'delivered', (e) => e.messageId === sent.ba, `for message ${sent.ba}`);
    check(evB.userId === UA.id, `delivered (on B) userId !== ${UA.id}`, evB);
  });

  await step('stream_management_ack', async () => {
    // XEP-0198: the SDK sends <r/> after each chat message and expects
    // <a h='N'/> with N = stanzas it sent since <enable/>.
    for (const [p, id] of [[A, sent.ab], [B, sent.ba]]) {
      const ev = await waitEvent(p, 'sentMessage', (e) => e.sent && e.sent.id === id, `(acked) for message ${id}`);
      check(!ev.lost, 'onSentMessageCallback reported the message as lost', ev);
    }
  });

  await step('typing', async () => {
    await inPage(A, (H, jid) => H.typing(jid, true), jidB);
    const ev = await waitEvent(B, 'typing', (e) => e.isTyping === true, 'with isTyping=true');
    check(ev.userId === UA.id, `typing userId !== ${UA.id}`, ev);
    await inPage(A, (H, jid) => H.typing(jid, false), jidB);
    const ev2 = await waitEvent(B, 'typing', (e) => e.isTyping === false, 'with isTyping=false (paused)');
    check(ev2.userId === UA.id, `paused userId !== ${UA.id}`, ev2);
  });

  await step('system_notification', async () => {
    const id = await inPage(A, (H, jid) => H.sendSystemMessage(jid, { body: 'sys', extension: { k: 'v' } }), jidB);
    check(typeof id === 'string' && id.length > 0, 'sendSystemMessage returned no id', id);
    // The SDK sends the headline without `from`: the server must stamp it.
    const ev = await waitEvent(B, 'system', (e) => e.msg && e.msg.id === id, `with id ${id}`);
    check(ev.msg.userId === UA.id, `system message userId !== ${UA.id} (server must stamp from)`, ev);
    check(ev.msg.body === 'sys', 'system message body !== sys', ev);
    check(ev.msg.extension && ev.msg.extension.k === 'v', 'system message extension.k !== v', ev);
    // (parseExtraParams drops moduleIdentifier from the extension.)
  });

  await step('ping_keepalive', async () => {
    const since = Date.now();
    await sleep(12000);
    for (const p of [A, B]) {
      const bad = (await events(p, 'disconnected')).concat(await events(p, 'reconnect'));
      check(bad.length === 0, `${p.name}: onDisconnectedListener/onReconnectListener fired`, bad);
      check(await inPage(p, (H) => H.isConnected()) === true, `${p.name}: QB.chat.isConnected is not true`);
      // Every SDK keep-alive ping (id '<uuid>:ping') sent in the window must
      // have been answered (an iq with the same id) within the SDK's 1 s.
      const pings = p.frames.filter((f) => f.dir === '>' && f.t >= since && f.t < Date.now() - 1500
        && /^<iq\b/.test(f.data) && /<ping\b/.test(f.data));
      check(pings.length >= 2, `${p.name}: expected >= 2 SDK pings in 12 s, saw ${pings.length}`);
      for (const f of pings) {
        const id = (f.data.match(/\bid=(['"])([^'"]+)\1/) || [])[2];
        const reply = p.frames.find((r) => r.dir === '<' && r.t >= f.t && /^<iq\b/.test(r.data)
          && (r.data.match(/\bid=(['"])([^'"]+)\1/) || [])[2] === id);
        check(reply, `${p.name}: SDK ping ${id} got no reply`, f.data);
        check(reply.t - f.t < 1000, `${p.name}: SDK ping ${id} answered after ${reply.t - f.t} ms (> 1 s)`);
        check(/\btype=(['"])result\1/.test(reply.data), `${p.name}: ping reply is not type=result`, reply.data);
      }
      const r = await inPage(p, (H) => H.ping());
      check(!r.err, `${p.name}: QB.chat.ping callback got an error`, r);
    }
  });

  await step('last_activity', async () => {
    await inPage(A, (H, id) => H.getLastUserActivity(id), UB.id);
    const ev = await waitEvent(A, 'lastActivity', () => true, '');
    check(ev.userId === UB.id, `last activity userId !== ${UB.id} (reply must come from B's JID)`, ev);
    check(typeof ev.seconds === 'number' && Number.isFinite(ev.seconds) && ev.seconds >= 0,
      'last activity seconds is not a number (error reply?)', ev);
  });

  // Messages bounced on purpose below; any other message error is a failure, except that
  // while A blocks B, the delivery markers B's SDK sends for A's messages bounce too.
  const expectedErrors = new Set();
  const blocked = { from: Infinity, to: Infinity };
  async function setPrivacy(items) {
    // The SDK's documented update path: decline the default list, replace, set it again.
    let r = await inPage(A, (H) => H.privacy('setAsDefault', null));
    check(!r.err, 'privacylist.setAsDefault(null) failed', r);
    if (!items) return;
    r = await inPage(A, (H, list) => H.privacy('create', list), { name: 'blocked', items });
    check(!r.err, 'privacylist.create failed', r);
    r = await inPage(A, (H) => H.privacy('setAsDefault', 'blocked'));
    check(!r.err, 'privacylist.setAsDefault failed', r);
  }
  async function checkRefused(from, to, toJid, body) {
    const id = await inPage(from, (H, jid, m) => H.send(jid, m), toJid, message(body));
    expectedErrors.add(id);
    await waitEvent(from, 'messageError', (e) => e.messageId === id, `for the refused message ${id}`);
    await sleep(300);
    const leaked = (await events(to, 'message')).filter((e) => e.msg && e.msg.id === id);
    check(leaked.length === 0, `${to.name} received a message the privacy list refuses`, leaked);
  }

  await step('privacy_list_one_way_block', async () => {
    // QuickBlox "block in one way": B cannot write to A, A can still write to B.
    blocked.from = Date.now();
    await setPrivacy([{ user_id: UB.id, action: 'deny' }]);
    await checkRefused(B, A, jidA, 'blocked?');
    await checkMessage(A, UA, B, jidB, 'one way only', 'ab2');
  });

  await step('privacy_list_two_way_block', async () => {
    // mutualBlock: neither side can write.
    await setPrivacy([{ user_id: UB.id, action: 'deny', mutualBlock: true }]);
    await checkRefused(B, A, jidA, 'blocked both ways?');
    await checkRefused(A, B, jidB, 'me neither?');
  });

  await step('privacy_list_unblock', async () => {
    await setPrivacy(null);
    blocked.to = Date.now();
    await checkMessage(B, UB, A, jidA, 'free again', 'ba2');
    await checkMessage(A, UA, B, jidB, 'free again', 'ab3');
  });

  if (finished) return;
  await step('no_page_errors', async () => {
    for (const p of [A, B]) {
      const errs = p.consoleLines.filter((l) => l.startsWith('pageerror'));
      check(errs.length === 0, `${p.name}: uncaught errors in the page`, errs);
      const msgErrs = (await events(p, 'messageError')).filter((e) => !expectedErrors.has(e.messageId)
        && !(p === B && e.t >= blocked.from && e.t <= blocked.to && e.error && e.error.code === 503));
      check(msgErrs.length === 0, `${p.name}: onMessageErrorListener fired`, msgErrs);
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
