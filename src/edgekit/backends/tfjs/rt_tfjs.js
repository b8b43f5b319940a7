// edgekit runner worker for TF.js graph models, in Node.js: the runner protocol (runner/worker.py) on
// stdin/stdout, one JSON request and one JSON response per line; arrays travel as .npz files.
// In Node the model runs on @tensorflow/tfjs with the WASM backend (never tfjs-node). With
// EDGEKIT_TFJS_BROWSER set (the browser device), the model runs in a headless Chromium page instead
// (tfjs_browser.js) and this process only speaks the protocol.
// npm packages: EDGEKIT_TFJS_MODULES, else the folder `edgekit devices setup --runtime tfjs` puts them in on a
// device (~/.edgekit/npm/tfjs-TAG), else the one `edgekit setup tfjs` installs them in.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const crypto = require('crypto');
const readline = require('readline');
const { readNpz, writeNpz } = require('./tfjs_npz.js');

const PROTOCOL = 2;
// one response per line; written through the stream (a pipe may be full: fs.writeSync would fail)
const proto = (obj) => new Promise((ok) => process.stdout.write(JSON.stringify(obj) + '\n', ok));
// libraries print to stdout: keep the protocol alone there
for (const k of ['log', 'info', 'warn', 'debug']) console[k] = (...a) => process.stderr.write(a.join(' ') + '\n');

// tfjs/npm.py: node_modules_dir(); for Node (not a browser: the device folder has no browser bundles and no
// playwright-core), device_npm.py's folder first
function modulesDir(browser) {
  if (process.env.EDGEKIT_TFJS_MODULES) return process.env.EDGEKIT_TFJS_MODULES;
  const pkg = fs.readFileSync(path.join(__dirname, 'tfjs_package.json'));
  const folder = `tfjs-${crypto.createHash('sha256').update(pkg).digest('hex').slice(0, 12)}`;
  const device = path.join(os.homedir(), '.edgekit', 'npm', folder, 'node_modules'); // devices setup --runtime tfjs
  if (!browser && fs.existsSync(path.join(device, '@tensorflow', 'tfjs', 'package.json'))) return device;
  const cache = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(cache, 'edgekit', 'npm', folder, 'node_modules'); // edgekit setup tfjs
}

function need(mods, name) {
  try {
    return require(path.join(mods, name));
  } catch (e) {
    const err = new Error(`the npm package ${name} is not installed in ${mods}`); // the session adds the fix
    err.name = 'ImportError';
    throw err;
  }
}

function statusKb(field) {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(fs.readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch (e) { return null; }
}

function resetPeak() {
  try { fs.writeFileSync('/proc/self/clear_refs', '5'); } catch (e) { /* not Linux */ }
  return statusKb('VmRSS') ?? Math.round(process.memoryUsage().rss / 1024);
}

function environment(extra) {
  let cpu = os.cpus()[0] ? os.cpus()[0].model : '';
  return { os: os.type(), release: os.release(), arch: os.machine ? os.machine() : os.arch(), cpu,
    cpu_count: os.cpus().length, mem_total_kb: Math.round(os.totalmem() / 1024), python: null,
    node: process.versions.node, numpy: null, worker: `Node.js ${process.versions.node}`, ...extra };
}

// The model in this process: @tensorflow/tfjs on its WASM backend.
class NodeEngine {
  constructor() {
    this.mods = modulesDir();
    this.tf = need(this.mods, '@tensorflow/tfjs');
    this.wasm = need(this.mods, '@tensorflow/tfjs-backend-wasm');
    this.wasmDir = path.join(this.mods, '@tensorflow', 'tfjs-backend-wasm', 'dist') + path.sep;
    const { Engine } = require('./tfjs_engine.js');
    this.engine = new Engine(this.tf, this.wasm);
  }

  async load(dir, threads) {
    const tf = this.tf;
    await this.engine.useBackend('wasm', threads, this.wasmDir);
    const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
    const handler = { load: async () => tf.io.getModelArtifactsForJSON(json, async (groups) => {
      const specs = [], bufs = [];
      for (const g of groups) {
        for (const p of g.paths) bufs.push(fs.readFileSync(path.join(dir, path.basename(p))));
        specs.push(...g.weights);
      }
      const all = Buffer.concat(bufs);
      return [specs, all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength)];
    }) };
    const model = await tf.loadGraphModel(handler);
    const info = this.engine.setModel(model);
    const b = this.engine.describeBackend();
    this.backend = b;
    const detail = `${b.backend}, ${b.threads || 1} thread${b.threads > 1 ? 's' : ''}${b.simd ? ', SIMD' : ''}`;
    return { ...info, runtime_version: `${tf.version.tfjs} (${detail}; Node.js ${process.versions.node})`, backend: b };
  }

  infer(arrays, stacked) { return this.engine.runAll(arrays, stacked); }

  bench(arrays, stacked, params) { return this.engine.bench(arrays, stacked, params); }

  env() {
    return environment({ runtimes: { tfjs: this.tf.version.tfjs }, tfjs_backend: this.backend || null });
  }

  close() {}
}

async function handle(engine, state, req) {
  const op = req.op;
  if (op === 'load') {
    state.rssStart = resetPeak();
    const t0 = performance.now();
    const info = await engine.load(req.artifact, Number(req.threads || 1));
    return { load_s: (performance.now() - t0) / 1000, ...info, rss_after_load_kb: statusKb('VmHWM') };
  }
  if (op === 'infer') {
    const arrays = readNpz(req.inputs);
    const t0 = performance.now();
    const outputs = await engine.infer(arrays, req.stacked || []);
    writeNpz(req.outputs, outputs);
    return { seconds: (performance.now() - t0) / 1000, outputs: Object.keys(outputs) };
  }
  if (op === 'bench') {
    const arrays = readNpz(req.inputs);
    const result = await engine.bench(arrays, req.stacked || [], req);
    if (!engine.remote) Object.assign(result, { peak_rss_kb: statusKb('VmHWM'), rss_start_kb: state.rssStart });
    return result;
  }
  if (op === 'env') return engine.env(environment);
  throw new Error(`unknown op '${op}'`);
}

async function main() {
  const browser = process.env.EDGEKIT_TFJS_BROWSER;
  let engine = null;
  const make = () => engine || (engine = browser
    ? new (require('./tfjs_browser.js').BrowserEngine)(JSON.parse(browser), modulesDir(true)) : new NodeEngine());
  const state = { rssStart: resetPeak() };
  await proto({ ready: true, protocol: PROTOCOL, pid: process.pid });
  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  for await (const line of rl) {
    if (!line.trim()) continue;
    const req = JSON.parse(line);
    if (req.op === 'quit') break;
    let resp;
    try {
      resp = { ok: true, ...(await handle(make(), state, req)) };
    } catch (e) {
      const kind = (e && e.name) || 'Error';
      resp = { ok: false, error: `${kind}: ${(e && e.message) || e}`.slice(0, 2000), kind };
    }
    await proto(resp);
  }
  if (engine) await engine.close();
  process.exit(0);
}

main();
