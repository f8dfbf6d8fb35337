// Preloaded (NODE_OPTIONS=--require) while the sandbox has egress: makes fetch() go through
// HTTPS_PROXY / HTTP_PROXY, except for the hosts NO_PROXY names. Node.js 24 and later do it
// themselves (NODE_USE_ENV_PROXY); before that fetch ignores the variables. Uses the undici
// package when the image has it (Debian's nodejs ships one); otherwise fetch is not proxied.
'use strict';
(() => {
  const major = Number(process.versions.node.split('.')[0]);
  const env = process.env;
  const proxy = env.HTTPS_PROXY || env.https_proxy || env.HTTP_PROXY || env.http_proxy;
  if (!proxy || major >= 24 || typeof fetch !== 'function') return;
  let undici;
  try {
    undici = require('undici');
  } catch {
    return;
  }
  const { Agent, Dispatcher, ProxyAgent, setGlobalDispatcher } = undici;
  if (!Agent || !Dispatcher || !ProxyAgent || !setGlobalDispatcher) return;
  const bypass = (env.NO_PROXY || env.no_proxy || '')
    .split(',')
    .map((h) => h.trim().toLowerCase())
    .filter(Boolean);
  const direct = (host) =>
    bypass.some((p) => p === '*' || host === p || host.endsWith(p.startsWith('.') ? p : `.${p}`));
  const agents = { direct: new Agent(), proxied: new ProxyAgent(proxy) };
  class EnvProxy extends Dispatcher {
    dispatch(options, handler) {
      const host = new URL(options.origin).hostname.replace(/^\[|\]$/g, '').toLowerCase();
      return (direct(host) ? agents.direct : agents.proxied).dispatch(options, handler);
    }
    close() {
      return Promise.all(Object.values(agents).map((a) => a.close())).then(() => {});
    }
    destroy(error) {
      return Promise.all(Object.values(agents).map((a) => a.destroy(error))).then(() => {});
    }
  }
  setGlobalDispatcher(new EnvProxy());
})();
