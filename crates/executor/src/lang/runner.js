// Runs JavaScript code inside the sandbox (see the executor's lang module and runner.py, which
// speaks the same protocol).
//
// Started ahead of time, it waits for one request line on file descriptor 6:
//   run            run /sandbox/main.js once, as a CommonJS module with /workspace as its
//                  directory for require(): a handler is found as exports.handler,
//                  module.exports.handler, or a top-level or global `handler`, called with
//                  (event, context) (and a callback when it takes three arguments), awaited,
//                  and its value reported
//   context CWD    become a code context: every following line `cell N` runs /sandbox/cell.js
//                  as a script in the one global scope the context keeps (top-level `var`,
//                  `function` and, from one cell to the next, `let`/`const` names persist); the
//                  value of its last statement is the main result, awaited when it is a promise
// Messages go to file descriptor 3, one JSON object per line ("display", "report", "done"). It
// is reopened close-on-exec, so programs the code starts do not inherit it (Node cannot mark an
// inherited descriptor itself); nothing printed can pose as a message.
//
// display(value) shows a value as text and JSON; display.html(s), display.markdown(s),
// display.svg(s), display.png(bytesOrBase64), display.jpeg(...), display.json(v) and
// display.raw({mime: value}) send other representations.
'use strict';
const fs = require('fs');
const path = require('path');
const util = require('util');
const vm = require('vm');
const Module = require('module');

const DIR = path.dirname(__filename);
const FILE = path.join(DIR, 'main.js');
const CELL = path.join(DIR, 'cell.js');

/** A descriptor's pipe reopened close-on-exec (every descriptor Node opens is). */
function private_(fd, flags) {
  try {
    const copy = fs.openSync('/proc/self/fd/' + fd, flags);
    fs.closeSync(fd);
    return copy;
  } catch (_) {
    return fd;
  }
}

const RESULTS = private_(3, fs.constants.O_WRONLY);
let reported = false;

function send(obj) {
  let data;
  try {
    data = Buffer.from(JSON.stringify(obj) + '\n');
  } catch (e) {
    return e;
  }
  try {
    let off = 0;
    while (off < data.length) off += fs.writeSync(RESULTS, data, off);
  } catch (_) {
    // The pipe is gone; the exit code tells the rest.
  }
  return null;
}

function report(obj) {
  if (reported) return;
  reported = true;
  send(Object.assign({ type: 'report' }, obj));
}

// --- rich output ------------------------------------------------------------------------------

function emit(data, main) {
  send({ type: 'display', output: { data, metadata: {}, is_main_result: !!main } });
}

/** A value as the REPL prints it, and as JSON when it has a JSON form. */
function bundle(value) {
  const data = { 'text/plain': util.inspect(value) };
  try {
    const json = JSON.stringify(value);
    if (json !== undefined) data['application/json'] = JSON.parse(json);
  } catch (_) {
    // No JSON form (a BigInt, a cycle): text only.
  }
  return data;
}

const base64 = (v) => (Buffer.isBuffer(v) || v instanceof Uint8Array ? Buffer.from(v).toString('base64') : String(v));

function display(...values) {
  for (const v of values) emit(bundle(v), false);
}
display.html = (s) => emit({ 'text/html': String(s) });
display.markdown = (s) => emit({ 'text/markdown': String(s) });
display.svg = (s) => emit({ 'image/svg+xml': String(s) });
display.png = (v) => emit({ 'image/png': base64(v) });
display.jpeg = (v) => emit({ 'image/jpeg': base64(v) });
display.json = (v) => emit({ 'application/json': JSON.parse(JSON.stringify(v)), 'text/plain': util.inspect(v) });
display.raw = (data) => emit(Object.assign({}, data));
globalThis.display = display;

// --- run: one module or handler ----------------------------------------------------------------

function readLineSync(fd) {
  const byte = Buffer.alloc(1);
  const bytes = [];
  for (;;) {
    let n;
    try {
      n = fs.readSync(fd, byte, 0, 1, null);
    } catch (e) {
      if (e.code === 'EINTR' || e.code === 'EAGAIN') continue;
      throw e;
    }
    if (n === 0) return null;
    if (byte[0] === 10) return Buffer.from(bytes).toString();
    bytes.push(byte[0]);
  }
}

function fail(err) {
  console.error(err && err.stack ? err.stack : String(err));
  report({
    outcome: 'exception',
    error_type: (err && err.name) || typeof err,
    message: err && err.message !== undefined ? String(err.message) : String(err),
    traceback: err && err.stack ? String(err.stack) : String(err),
  });
  process.exit(1);
}

function context(ctx) {
  return {
    awsRequestId: ctx.aws_request_id,
    aws_request_id: ctx.aws_request_id,
    functionName: ctx.function_name,
    function_name: ctx.function_name,
    functionVersion: '$LATEST',
    memoryLimitInMB: String(ctx.memory_limit_in_mb),
    memory_limit_in_mb: ctx.memory_limit_in_mb,
    callbackWaitsForEmptyEventLoop: false,
    getRemainingTimeInMillis: () => Math.max(0, Math.floor(ctx.deadline_ms - Date.now())),
    get_remaining_time_in_millis: () => Math.max(0, Math.floor(ctx.deadline_ms - Date.now())),
  };
}

async function run() {
  process.on('uncaughtException', fail);
  process.on('unhandledRejection', fail);
  process.on('exit', (code) => report({ outcome: 'exit', code }));
  const source = fs.readFileSync(FILE, 'utf8');
  const mod = new Module(FILE, null);
  mod.filename = FILE;
  mod.paths = Module._nodeModulePaths('/workspace');
  const req = Module.createRequire('/workspace/');
  const wrapper =
    '(function (exports, require, module, __filename, __dirname) {' +
    source +
    '\n;return typeof handler === "undefined" ? undefined : handler;\n})';
  const fn = vm.runInThisContext(wrapper, { filename: FILE });
  const local = fn.call(mod.exports, mod.exports, req, mod, FILE, '/workspace');
  const handler = [mod.exports && mod.exports.handler, local, globalThis.handler].find(
    (h) => typeof h === 'function',
  );
  if (!handler) {
    // A plain script: it ends when its event loop is empty; 'exit' reports the code.
    return;
  }
  const event = JSON.parse(fs.readFileSync(path.join(DIR, 'event.json'), 'utf8'));
  const ctx = context(JSON.parse(fs.readFileSync(path.join(DIR, 'context.json'), 'utf8')));
  const value = await new Promise((resolve, reject) => {
    const cb = (err, v) => (err ? reject(err) : resolve(v));
    const r = handler.length >= 3 ? handler(event, ctx, cb) : handler(event, ctx);
    if (handler.length < 3 || (r && typeof r.then === 'function')) Promise.resolve(r).then(resolve, reject);
  });
  let json;
  try {
    json = JSON.stringify(value === undefined ? null : value);
    if (json === undefined) throw new TypeError('value of type ' + typeof value + ' has no JSON form');
  } catch (e) {
    report({ outcome: 'not_serializable', message: String(e && e.message ? e.message : e) });
    process.exit(1);
  }
  reported = true;
  const data = Buffer.from('{"type":"report","outcome":"returned","value":' + json + '}\n');
  let off = 0;
  try {
    while (off < data.length) off += fs.writeSync(RESULTS, data, off);
  } catch (_) {
    // As in send().
  }
  process.exit(0);
}

// --- context: one cell after another -----------------------------------------------------------

let interrupt = null;

/** What a thrown value says, with the stack cut where the runner's own frames begin. */
function describe(e) {
  if (e instanceof Error) {
    const lines = String(e.stack || e).split('\n');
    const end = lines.findIndex((l) => /\(node:vm|\bnode:vm:|runner\.js/.test(l));
    const traceback = (end > 0 ? lines.slice(0, end) : lines).join('\n');
    return { name: e.name, value: String(e.message), traceback };
  }
  const text = util.inspect(e);
  return { name: typeof e, value: text, traceback: 'Uncaught ' + text };
}

/** `promise`, or a rejection as soon as SIGINT arrives. */
function interruptible(promise) {
  return new Promise((resolve, reject) => {
    interrupt = () => reject(new Error('Script execution was interrupted by `SIGINT`'));
    promise.then(resolve, reject);
  }).finally(() => {
    interrupt = null;
  });
}

function compile(source, filename) {
  try {
    return new vm.Script(source, { filename });
  } catch (e) {
    // `await` at the top level: run the cell in an async function (its declarations stay local).
    if (!(e instanceof SyntaxError) || !/await/.test(e.message)) throw e;
    return new vm.Script('(async () => {\n' + source + '\n})()', { filename, lineOffset: -1 });
  }
}

async function cell(seq) {
  let code = 0;
  let error = null;
  try {
    const script = compile(fs.readFileSync(CELL, 'utf8'), 'cell-' + seq);
    let value = script.runInThisContext({ breakOnSigint: true, displayErrors: false });
    if (value && typeof value.then === 'function') value = await interruptible(value);
    if (value !== undefined) {
      globalThis._ = value;
      emit(bundle(value), true);
    }
  } catch (e) {
    code = 1;
    error = describe(e);
    console.error(error.traceback);
  }
  send({ type: 'done', seq, exit_code: code, error });
}

function serve(cwd) {
  try {
    process.chdir(cwd);
  } catch (e) {
    send({ type: 'done', seq: 0, exit_code: 1, error: describe(e) });
    process.exit(1);
  }
  const dir = process.cwd();
  globalThis.require = Module.createRequire(path.join(dir, '/'));
  globalThis.module = new Module('<context>', null);
  globalThis.exports = globalThis.module.exports;
  globalThis.__dirname = dir;
  // A context outlives errors nobody caught: they are printed, not fatal.
  process.on('uncaughtException', (e) => console.error(describe(e).traceback));
  process.on('unhandledRejection', (e) => console.error(describe(e).traceback));
  process.on('SIGINT', () => interrupt && interrupt());
  const net = require('net');
  const input = new net.Socket({ fd: private_(6, fs.constants.O_RDONLY), readable: true, writable: false });
  let pending = '';
  let queue = Promise.resolve();
  input.setEncoding('utf8');
  input.on('data', (chunk) => {
    pending += chunk;
    let nl;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const [op, arg] = pending.slice(0, nl).split(' ');
      pending = pending.slice(nl + 1);
      if (op === 'cell' && /^\d+$/.test(arg)) queue = queue.then(() => cell(Number(arg)));
    }
  });
  input.on('end', () => queue.then(() => process.exit(0)));
  send({ type: 'done', seq: 0, exit_code: 0, error: null });
}

const request = (readLineSync(6) || '').split(' ');
if (request[0] === 'context') {
  serve(request.slice(1).join(' '));
} else {
  fs.closeSync(6);
  run().catch(fail);
}
