#!/usr/bin/env node
// Drives the real QuickBlox JS SDK (npm quickblox@2.23.0) through the REST
// session and users API of a Switchboard server.
//
// Env: SB_API (host:port, no scheme), SB_CHAT (XMPP domain), SB_APP_ID,
//      SB_AUTH_KEY, SB_AUTH_SECRET, SB_ACCOUNT_KEY.
// The caller sets NODE_TLS_REJECT_UNAUTHORIZED=0 for a self-signed cert.
//
// Output on stdout: one `STEP <name> ok` line per step, then `ALL OK` and
// exit 0; or `FAIL <name>: <details>` and exit 1. The SDK's own console
// chatter is sent to stderr so stdout stays machine-readable.
//
// SDK facts this script relies on (node_modules/quickblox/src):
// - `require('quickblox')` is a ready instance; `QB.QuickBlox` is the class,
//   so `new QB.QuickBlox()` + `.init(...)` makes another instance with its own
//   session (src/qbMain.js). BUT config (creds, endpoints) is one module-level
//   object shared by all instances (src/qbConfig.js): init'ing any instance
//   with a wrong secret changes the secret for every instance.
// - Errors reach callbacks as {code, status:'error', message, detail}
//   (src/qbProxy.js _requestCallback): code = HTTP status, message = parsed
//   JSON body (or raw text for dataType:'text' calls), detail = body.errors.
// - A fetch failure (refused connection) or a body that is not JSON is turned
//   into a *success* with body ' ' by qbProxy, so every success result below
//   is checked for shape, never trusted.
'use strict';

const STEP_TIMEOUT_MS = 60000;

const out = (line) => process.stdout.write(line + '\n');
// The SDK logs with console.log (e.g. "current platform:" in init); keep it
// off stdout.
console.log = (...a) => process.stderr.write(a.map(fmt).join(' ') + '\n');
console.info = console.log;
console.warn = console.log;

let currentStep = 'startup';
let finished = false;

function fmt(v) {
  if (typeof v === 'string') return v;
  try {
    return JSON.stringify(v, (k, x) => {
      if (x instanceof Error) {
        return { name: x.name, message: x.message, code: x.code, errno: x.errno, type: x.type };
      }
      return x === undefined ? '<undefined>' : x;
    });
  } catch (e) {
    return require('util').inspect(v, { depth: 6, breakLength: Infinity });
  }
}

function fail(step, details) {
  if (finished) return;
  finished = true;
  out(`FAIL ${step}: ${details}`);
  process.exit(1);
}

class StepError extends Error {}

function check(cond, msg, obj) {
  if (!cond) throw new StepError(obj === undefined ? msg : `${msg}; got ${fmt(obj)}`);
}

const timer = setTimeout(() => fail('timeout', `global ${STEP_TIMEOUT_MS} ms timeout hit during step '${currentStep}'`), STEP_TIMEOUT_MS);

process.on('unhandledRejection', (e) => fail(currentStep, `unhandled rejection: ${fmt(e)} ${e && e.stack ? e.stack : ''}`));
process.on('uncaughtException', (e) => fail(currentStep, `uncaught exception: ${fmt(e)} ${e && e.stack ? e.stack : ''}`));

// --- configuration ---------------------------------------------------------

function env(name) {
  const v = process.env[name];
  if (v === undefined || v === '') fail('config', `environment variable ${name} is not set`);
  return v;
}

const API = env('SB_API');
const CHAT = env('SB_CHAT');
const APP_ID_RAW = env('SB_APP_ID');
const APP_ID = /^\d+$/.test(APP_ID_RAW) ? Number(APP_ID_RAW) : APP_ID_RAW;
const AUTH_KEY = env('SB_AUTH_KEY');
const AUTH_SECRET = env('SB_AUTH_SECRET');
const ACCOUNT_KEY = env('SB_ACCOUNT_KEY');

const SDK_CONFIG = { endpoints: { api: API, chat: CHAT }, debug: { mode: 0 } };

let QB;
try {
  QB = require('quickblox');
} catch (e) {
  fail('config', `cannot load the quickblox SDK (run npm ci in ${__dirname}): ${e.message}`);
}

// Both endpoints are set, so the SDK never calls account_settings.
function initInstance(inst, secret) {
  inst.init(APP_ID, AUTH_KEY, secret, ACCOUNT_KEY, SDK_CONFIG);
  return inst;
}

// Calls `fn(...args, cb)` and resolves with the callback's result; rejects
// with {sdkError} if the callback got an error.
function call(fn, thisArg, ...args) {
  return new Promise((resolve, reject) => {
    try {
      fn.call(thisArg, ...args, (err, res) => {
        if (err) reject({ sdkError: err });
        else resolve(res);
      });
    } catch (e) {
      reject(e);
    }
  });
}

// Runs a call that must fail; resolves with the SDK error object.
async function expectError(what, fn, thisArg, ...args) {
  let res;
  try {
    res = await call(fn, thisArg, ...args);
  } catch (e) {
    if (e && e.sdkError) return e.sdkError;
    throw e;
  }
  throw new StepError(`${what} succeeded but should have failed; result ${fmt(res)}`);
}

function checkErrorShape(err, codes) {
  check(err && typeof err === 'object', 'error is not an object', err);
  check(typeof err.code === 'number', 'error.code is not a number (HTTP status expected)', err);
  check(codes.includes(err.code), `error.code is not one of ${codes.join('/')}`, err);
  check(err.detail !== undefined || err.message !== undefined, 'error has neither detail nor message', err);
}

function errorsText(err) {
  return JSON.stringify([err && err.detail, err && err.message]).toLowerCase();
}

function checkUser(u, what) {
  check(u && typeof u === 'object', `${what}: user is not an object`, u);
  check(typeof u.id === 'number' && u.id > 0, `${what}: user.id is not a positive number`, u);
}

function checkPaged(res, what) {
  check(res && typeof res === 'object' && Array.isArray(res.items), `${what}: not a paged list {items:[…]}`, res);
  check(typeof res.total_entries === 'number', `${what}: total_entries is not a number`, res);
  for (const it of res.items) {
    check(it && it.user && typeof it.user.id === 'number', `${what}: item is not {user:{id}}`, res);
  }
  return res.items.map((it) => it.user);
}

function tagsOf(u) {
  const t = u.user_tags;
  if (Array.isArray(t)) return t.map(String);
  if (typeof t === 'string') return t.split(',').map((s) => s.trim()).filter(Boolean);
  return [];
}

async function step(name, fn) {
  currentStep = name;
  try {
    await fn();
  } catch (e) {
    if (e instanceof StepError) fail(name, e.message);
    if (e && e.sdkError) fail(name, `SDK error ${fmt(e.sdkError)}`);
    fail(name, `exception ${fmt(e)} ${e && e.stack ? e.stack : ''}`);
  }
  out(`STEP ${name} ok`);
}

// --- the scenario ----------------------------------------------------------

async function main() {
  const suffix = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
  const alice = {
    login: `alice_${suffix}`,
    password: 'alicepass123',
    email: `alice_${suffix}@example.com`,
    full_name: 'Alice A',
    tag_list: 'red,blue',
    custom_data: '{"x":1}',
  };
  const bob = {
    login: `bob_${suffix}`,
    password: 'bobpass12345',
    email: `bob_${suffix}@example.com`,
    full_name: `Bob ${suffix}`,
    tag_list: 'green',
    custom_data: '{"y":2}',
  };
  const aliceNewPassword = 'alicepass456';
  let aliceId, bobId, appToken;

  await step('app_session', async () => {
    initInstance(QB, AUTH_SECRET);
    const s = await call(QB.createSession, QB);
    check(s && typeof s === 'object', 'createSession gave no session object (is the server reachable and answering JSON?)', s);
    check(s.user_id === 0, 'app session user_id !== 0', s);
    check(typeof s.token === 'string' && s.token.length > 0, 'session token is not a non-empty string', s);
    appToken = s.token;
  });

  for (const [name, u] of [['create_alice', alice], ['create_bob', bob]]) {
    await step(name, async () => {
      const r = await call(QB.users.create, QB.users, Object.assign({}, u));
      checkUser(r, 'users.create');
      check(r.login === u.login, 'login mismatch', r);
      check(r.full_name === u.full_name, 'full_name mismatch', r);
      check(r.email === u.email, 'email mismatch', r);
      check(r.custom_data === u.custom_data, 'custom_data mismatch', r);
      const tags = tagsOf(r);
      for (const t of u.tag_list.split(',')) check(tags.includes(t), `user_tags lacks ${t}`, r);
      check(r.password === undefined && r.old_password === undefined, 'user echoes a password field', r);
      if (u === alice) aliceId = r.id; else bobId = r.id;
      if (u === bob) check(bobId !== aliceId, 'alice and bob got the same id', r);
    });
  }

  await step('wrong_secret', async () => {
    const bad = initInstance(new QB.QuickBlox(), AUTH_SECRET + 'x');
    let err;
    try {
      err = await expectError('createSession with a wrong auth secret', bad.createSession, bad);
    } finally {
      // qbConfig is shared by all instances: put the right secret back.
      initInstance(bad, AUTH_SECRET);
    }
    checkErrorShape(err, [401, 422]);
    check(err.status === 'error', 'error.status !== "error"', err);
    process.stderr.write(`wrong_secret error shape: ${fmt(err)}\n`);
  });

  await step('login', async () => {
    const u = await call(QB.login, QB, { login: alice.login, password: alice.password });
    checkUser(u, 'QB.login');
    check(u.id === aliceId, `QB.login user id !== alice id ${aliceId}`, u);
    check(u.login === alice.login, 'QB.login login mismatch', u);
  });

  await step('get_session', async () => {
    const r = await call(QB.getSession, QB);
    // getSession hands over the raw body, still wrapped: {session:{…}}.
    check(r && r.session && typeof r.session === 'object', 'getSession result is not {session:{…}}', r);
    check(r.session.user_id === aliceId, `session.user_id !== alice id ${aliceId}`, r);
    check(r.session.token === appToken, 'session token changed by QB.login', r);
  });

  await step('user_session_direct', async () => {
    const other = initInstance(new QB.QuickBlox(), AUTH_SECRET);
    const s = await call(other.createSession, other, { login: bob.login, password: bob.password });
    check(s && typeof s === 'object', 'createSession({login,password}) gave no session object', s);
    check(s.user_id === bobId, `user session user_id !== bob id ${bobId}`, s);
    check(typeof s.token === 'string' && s.token.length > 0 && s.token !== appToken, 'bad or reused token', s);
    const r = await call(other.getSession, other);
    check(r && r.session && r.session.user_id === bobId, 'getSession on the second instance is not bob', r);
  });

  await step('get_by_id', async () => {
    const u = await call(QB.users.get, QB.users, aliceId);
    checkUser(u, 'users.get(id)');
    check(u.id === aliceId && u.login === alice.login, 'wrong user', u);
  });

  await step('get_by_login', async () => {
    const u = await call(QB.users.get, QB.users, { login: alice.login });
    checkUser(u, 'users.get({login})');
    check(u.id === aliceId, 'wrong user', u);
  });

  await step('get_by_email', async () => {
    const u = await call(QB.users.get, QB.users, { email: alice.email });
    checkUser(u, 'users.get({email})');
    check(u.id === aliceId, 'wrong user', u);
  });

  await step('get_by_full_name', async () => {
    const r = await call(QB.users.get, QB.users, { full_name: 'Alice A', per_page: 100 });
    const users = checkPaged(r, 'users.get({full_name})');
    check(users.some((u) => u.id === aliceId), 'alice not in the result', r);
    check(users.every((u) => u.full_name === 'Alice A'), 'a user with another full_name was returned', r);
  });

  await step('get_by_tags', async () => {
    const r = await call(QB.users.get, QB.users, { tags: ['red'], per_page: 100 });
    const users = checkPaged(r, 'users.get({tags})');
    check(users.some((u) => u.id === aliceId), 'alice not in the result', r);
    check(!users.some((u) => u.id === bobId), 'bob (not tagged red) is in the result', r);
  });

  await step('list_filter_eq', async () => {
    const r = await call(QB.users.listUsers, QB.users, {
      page: 1, per_page: 10, filter: { field: 'login', param: 'eq', value: alice.login },
    });
    const users = checkPaged(r, 'listUsers eq');
    check(r.total_entries === 1 && users.length === 1, 'expected exactly one user', r);
    check(users[0].login === alice.login, 'items[0].user.login mismatch', r);
  });

  await step('list_order_desc', async () => {
    // The SDK sends order=desc string id (its type detection is broken).
    const r = await call(QB.users.listUsers, QB.users, {
      page: 1, per_page: 100, order: { sort: 'desc', field: 'id' },
    });
    const users = checkPaged(r, 'listUsers order');
    check(users.length >= 2, 'expected at least alice and bob', r);
    for (let i = 1; i < users.length; i++) {
      check(users[i - 1].id > users[i].id, `ids not strictly descending at index ${i}`, users.map((u) => u.id));
    }
    // bob was created after alice, so he must come first of the two
    const ia = users.findIndex((u) => u.id === aliceId);
    const ib = users.findIndex((u) => u.id === bobId);
    check(ia >= 0 && ib >= 0 && ib < ia, 'bob does not come before alice', users.map((u) => u.id));
  });

  await step('list_filter_in', async () => {
    const r = await call(QB.users.listUsers, QB.users, {
      page: 1, per_page: 10, filter: { field: 'id', param: 'in', value: [aliceId, bobId] },
    });
    const users = checkPaged(r, 'listUsers in');
    check(users.length === 2 && r.total_entries === 2, 'expected 2 users', r);
    const ids = users.map((u) => u.id).sort((a, b) => a - b);
    check(ids[0] === Math.min(aliceId, bobId) && ids[1] === Math.max(aliceId, bobId), 'wrong ids', ids);
  });

  await step('update_full_name', async () => {
    const u = await call(QB.users.update, QB.users, aliceId, { full_name: 'Alice B' });
    checkUser(u, 'users.update');
    check(u.id === aliceId && u.full_name === 'Alice B', 'full_name not updated', u);
    const again = await call(QB.users.get, QB.users, aliceId);
    check(again && again.full_name === 'Alice B', 'full_name not persisted', again);
  });

  await step('update_password', async () => {
    const u = await call(QB.users.update, QB.users, aliceId, {
      old_password: alice.password, password: aliceNewPassword,
    });
    checkUser(u, 'users.update(password)');
    check(u.id === aliceId, 'wrong user', u);
    await call(QB.logout, QB);
    const err = await expectError('QB.login with the old password', QB.login, QB,
      { login: alice.login, password: alice.password });
    checkErrorShape(err, [401, 422]);
    const again = await call(QB.login, QB, { login: alice.login, password: aliceNewPassword });
    checkUser(again, 'QB.login(new password)');
    check(again.id === aliceId, 'QB.login with the new password is not alice', again);
  });

  await step('update_other_forbidden', async () => {
    const err = await expectError('alice updating bob', QB.users.update, QB.users, bobId, { full_name: 'Hacked' });
    checkErrorShape(err, [403]);
    const b = await call(QB.users.get, QB.users, bobId);
    check(b && b.full_name === bob.full_name, 'bob was modified anyway', b);
  });

  await step('logout_destroy', async () => {
    await call(QB.logout, QB);
    const r = await call(QB.getSession, QB);
    check(r && r.session && r.session.user_id === 0, 'after logout the session still has a user', r);
    await call(QB.destroySession, QB);
    // destroySession clears the stored session, so no QB-Token would be sent
    // at all: put the dead token back to prove the server forgot it.
    QB.service.setSession({ token: appToken });
    const err = await expectError('users.get with a destroyed token', QB.users.get, QB.users, aliceId);
    checkErrorShape(err, [401]);
    check(errorsText(err).includes('required session does not exist'),
      'error does not say "Required session does not exist"', err);
  });

  await step('delete_self', async () => {
    const s = await call(QB.createSession, QB, { login: alice.login, password: aliceNewPassword });
    check(s && s.user_id === aliceId, 'new session is not alice', s);
    await call(QB.users.delete, QB.users, aliceId);
    // Look the user up from a fresh app session, so the answer cannot depend
    // on what the server does with a deleted user's own session.
    const app = await call(QB.createSession, QB);
    check(app && app.user_id === 0, 'new app session is not an app session', app);
    const err = await expectError('users.get of a deleted user', QB.users.get, QB.users, aliceId);
    checkErrorShape(err, [404]);
  });

  currentStep = 'done';
  clearTimeout(timer);
  finished = true;
  out('ALL OK');
  process.exit(0);
}

main().catch((e) => fail(currentStep, `exception ${fmt(e)} ${e && e.stack ? e.stack : ''}`));
