// Runs one execution's JavaScript code inside the sandbox (see the executor's lang module).
//
// The code runs as a CommonJS module from /sandbox/main.js with /workspace as its directory for
// require(). A handler is found as exports.handler, module.exports.handler, or a top-level or
// global `handler`; it is called with (event, context) (and a callback when it takes three
// arguments), awaited, and its value reported on file descriptor 3 — a pipe only the executor
// reads, so nothing printed can pose as a result. See runner.py for the report's shape.
'use strict';
const fs = require('fs');
const vm = require('vm');
const Module = require('module');

const FILE = '/sandbox/main.js';
let reported = false;

function send(text) {
  if (reported) return;
  reported = true;
  try {
    const data = Buffer.from(text);
    let off = 0;
    while (off < data.length) off += fs.writeSync(3, data, off);
    fs.closeSync(3);
  } catch (_) {
    // The pipe is gone; the exit code tells the rest.
  }
}

function report(obj) {
  send(JSON.stringify(obj));
}

function fail(err) {
  console.error(err && err.stack ? err.stack : String(err));
  report({
    outcome: 'exception',
    error_type: (err && err.name) || typeof err,
    message: err && err.message !== undefined ? String(err.message) : String(err),
  });
  process.exit(1);
}

process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);
process.on('exit', (code) => report({ outcome: 'exit', code }));

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

async function main() {
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
  const event = JSON.parse(fs.readFileSync('/sandbox/event.json', 'utf8'));
  const ctx = context(JSON.parse(fs.readFileSync('/sandbox/context.json', 'utf8')));
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
  send('{"outcome":"returned","value":' + json + '}');
  process.exit(0);
}

main().catch(fail);
