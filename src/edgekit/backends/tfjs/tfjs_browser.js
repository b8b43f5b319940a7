// The browser device's side of the Node worker (rt_tfjs.js with EDGEKIT_TFJS_BROWSER set): serves a
// page on 127.0.0.1 (with the COOP/COEP headers that give cross-origin isolation: high-resolution
// timers and WASM threads), starts the system Chromium headless with a fresh profile through
// playwright-core (which downloads no browser), and runs the model in the page on the backend asked
// for (wasm or webgl). Any error the page logs fails the request that was running; every request the
// browser makes is recorded, and any that is not to this server is blocked and reported.
'use strict';
const fs = require('fs');
const http = require('http');
const path = require('path');

// keep Chromium off the network: no proxy, no name resolution but loopback, no background services
const FLAGS = [
  '--no-proxy-server', '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
  '--disable-background-networking', '--disable-component-update', '--disable-domain-reliability',
  '--disable-sync', '--no-first-run', '--no-default-browser-check', '--no-pings', '--disable-breakpad',
  '--disable-client-side-phishing-detection', '--disable-default-apps', '--disable-extensions',
  '--metrics-recording-only', '--safebrowsing-disable-auto-update', '--password-store=basic',
  // (no --disable-features here: it would replace playwright-core's own list, which already turns off
  // OptimizationHints, MediaRouter, NetworkTimeServiceQuerying, PreconnectToSearch, ...)
  // WebGL without a GPU: ANGLE on SwiftShader (the browser's own software renderer)
  '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--ignore-gpu-blocklist',
];
const START_S = 90;
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json',
  '.bin': 'application/octet-stream' };

function encode(arrays) {
  const out = {};
  for (const [k, a] of Object.entries(arrays)) {
    out[k] = { dtype: a.dtype, shape: a.shape,
      b64: Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength).toString('base64') };
  }
  return out;
}

const CTORS = { float32: Float32Array, int32: Int32Array, uint8: Uint8Array, bool: Uint8Array };

function decode(arrays) {
  const out = {};
  for (const [k, a] of Object.entries(arrays)) {
    const bytes = Buffer.from(a.b64, 'base64');
    const copy = new Uint8Array(bytes.length);
    copy.set(bytes);
    out[k] = { dtype: a.dtype, shape: a.shape, data: new CTORS[a.dtype](copy.buffer) };
  }
  return out;
}

class BrowserEngine {
  constructor(cfg, mods) {
    this.cfg = cfg;
    this.mods = mods;
    this.remote = true; // the model does not run in this process: its memory is not the model's
    this.errors = [];
    this.requests = 0;
    this.offLoopback = [];
    this.retried = 0;
    this.modelDir = null;
    this.loads = 0;
    this.playwright = require(path.join(mods, 'playwright-core'));
  }

  files(url) { // what the page may fetch: its own files, the npm bundles, the loaded model
    const here = __dirname, tfjs = path.join(this.mods, '@tensorflow');
    if (url === '/') return path.join(here, 'tfjs_page.html');
    if (url === '/engine.js') return path.join(here, 'tfjs_engine.js');
    if (url === '/tfjs/tf.min.js') return path.join(tfjs, 'tfjs', 'dist', 'tf.min.js');
    const m = /^\/tfjs\/([\w.-]+\.(js|wasm))$/.exec(url);
    if (m) return path.join(tfjs, 'tfjs-backend-wasm', 'dist', m[1]);
    const model = /^\/model\/\d+\/([\w.-]+)$/.exec(url);
    if (model && this.modelDir) return path.join(this.modelDir, model[1]);
    return null;
  }

  serve(req, res) {
    const url = decodeURIComponent(req.url.split('?')[0]);
    const file = this.files(url);
    const headers = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp',
      'Cross-Origin-Resource-Policy': 'same-origin', 'Cache-Control': 'no-store' };
    if (url === '/favicon.ico') { res.writeHead(204, headers); res.end(); return; }
    fs.readFile(file || '/nonexistent', (err, body) => {
      if (err) { res.writeHead(404, headers); res.end(); return; }
      res.writeHead(200, { ...headers, 'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream' });
      res.end(body);
    });
  }

  // Start the server and the browser and open the page, within START_S; a browser that does not get
  // there (a renderer that never spawns on a loaded machine) is closed and started once more.
  async start() {
    for (let attempt = 1; !this.page; attempt++) {
      let timer;
      const late = new Promise((ok, fail) => {
        timer = setTimeout(() => fail(new Error(`Chromium did not open the page within ${START_S} s`)), START_S * 1000);
      });
      try {
        await Promise.race([this.open(), late]);
      } catch (e) {
        await this.close();
        this.page = null;
        if (attempt >= 2) throw e;
        process.stderr.write(`${e.message}; starting it again\n`);
      } finally {
        clearTimeout(timer);
      }
    }
  }

  async open() {
    this.server = http.createServer((q, s) => this.serve(q, s));
    await new Promise((ok, fail) => { this.server.once('error', fail); this.server.listen(0, '127.0.0.1', ok); });
    this.origin = `http://127.0.0.1:${this.server.address().port}`;
    const { chromium } = this.playwright;
    this.browser = await chromium.launch({ executablePath: this.cfg.executable, headless: true,
      args: [...FLAGS, ...(this.cfg.args || [])], timeout: 60000 });
    this.version = this.browser.version();
    const context = await this.browser.newContext(); // a fresh, empty profile
    await context.route('**/*', (route) => {
      const url = route.request().url();
      if (url.startsWith(this.origin + '/')) return route.continue();
      this.offLoopback.push(url);
      return route.abort('blockedbyclient');
    });
    context.on('request', () => { this.requests += 1; });
    const page = await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error') this.errors.push(`console: ${m.text()}`); });
    page.on('pageerror', (e) => this.errors.push(`page error: ${e.message}`));
    this.crashed = new Promise((ok, fail) => page.on('crash', () => fail(new Error(
      'the page crashed (the renderer died: out of memory, or a GPU process failure)'))));
    this.crashed.catch(() => {}); // raced by every call below; never unhandled
    page.on('requestfailed', (r) => {
      const why = r.failure() ? r.failure().errorText : '?';
      if (why === 'net::ERR_NETWORK_CHANGED') this.retried += 1; // the page fetches it again (fetchAgain)
      else this.errors.push(`request failed: ${r.url()} (${why})`);
    });
    await page.goto(this.origin + '/', { waitUntil: 'load' });
    await page.waitForFunction(() => window.edgekit && window.edgekit.ready, null, { timeout: START_S * 1000 });
    this.page = page;
    this.check('opening the page');
  }

  check(doing) {
    if (this.errors.length) {
      const first = this.errors.splice(0).join(' | ');
      throw new Error(`the page logged an error while ${doing}: ${first.slice(0, 500)}`);
    }
  }

  async call(doing, fn, arg, seconds = 300) { // a page that stops answering fails the request, in time
    let timer;
    const late = new Promise((ok, fail) => {
      timer = setTimeout(() => fail(new Error(`the page did not answer within ${seconds} s while ${doing}`)),
        seconds * 1000);
    });
    try {
      return await Promise.race([this.page.evaluate(fn, arg), late, this.crashed]);
    } finally {
      clearTimeout(timer);
      this.check(doing);
    }
  }

  async load(dir, threads) {
    await this.start();
    this.modelDir = path.resolve(dir);
    this.loads += 1;
    const url = `/model/${this.loads}/model.json`;
    const info = await this.call('loading the model', (a) => window.edgekit.load(a.url, a.backend, a.threads),
      { url, backend: this.cfg.backend || 'wasm', threads });
    this.backend = info.backend;
    const b = info.backend;
    const detail = b.backend === 'wasm' ? `wasm, ${b.threads} thread${b.threads === 1 ? '' : 's'}${b.simd ? ', SIMD' : ''}`
      : `${b.backend}${b.renderer ? `, ${b.renderer}` : ''}`;
    this.isolated = info.isolated;
    return { inputs: info.inputs, outputs: info.outputs, batch_limit: info.batch_limit, backend: b,
      runtime_version: `${b.tfjs} (${detail}; Chromium ${this.version})` };
  }

  async infer(arrays, stacked) {
    const out = await this.call('running inference', (a) => window.edgekit.infer(a.arrays, a.stacked),
      { arrays: encode(arrays), stacked });
    return decode(out);
  }

  bench(arrays, stacked, params) {
    const p = { warmup: params.warmup, min_runs: params.min_runs, min_seconds: params.min_seconds,
      max_seconds: params.max_seconds, batch: params.batch };
    return this.call('benchmarking', (a) => window.edgekit.bench(a.arrays, a.stacked, a.params),
      { arrays: encode(arrays), stacked, params: p }, 2 * Number(params.max_seconds || 60) + 120);
  }

  async env(environment) {
    await this.start();
    const page = await this.call('probing the page', () => ({ ua: navigator.userAgent, tfjs: tf.version.tfjs }));
    const ua = page.ua;
    return environment({ runtimes: { tfjs: page.tfjs }, tfjs_backend: this.backend || null,
      worker: `Chromium ${this.version} (driven from Node.js ${process.versions.node})`,
      browser: `Chromium ${this.version}`, browser_executable: this.cfg.executable, user_agent: ua,
      cross_origin_isolated: this.isolated ?? null,
      network: { origin: this.origin, requests: this.requests, off_loopback: this.offLoopback.slice(),
        refetched_after_network_change: this.retried } });
  }

  async close() {
    const browser = this.browser, server = this.server;
    this.browser = null;
    this.server = null;
    try { if (browser) await browser.close(); } catch (e) { /* already gone */ }
    if (server) server.close();
  }
}

module.exports = { BrowserEngine };
