// What runs a TF.js graph model, the same in Node.js and in a browser page: picking the backend,
// matching data arrays to the model's inputs, running a data set in batches (the runner's
// run_all), and timing calls (the runner's time_calls). Arrays are {dtype, shape, data: TypedArray}.
(function (root, factory) {
  if (typeof module === 'object' && module.exports) module.exports = factory();
  else root.EdgekitEngine = factory();
}(typeof self !== 'undefined' ? self : this, function () {
  'use strict';

  function lookupInput(feed, name) { // runtime_base.lookup_input
    if (name in feed) return feed[name];
    const core = name.split(':')[0].replace('serving_default_', '');
    if (core in feed) return feed[core];
    const close = Object.keys(feed).filter((k) => core.startsWith(k) || k.startsWith(core));
    if (close.length === 1) return feed[close[0]];
    const keys = Object.keys(feed);
    if (keys.length === 1) return feed[keys[0]];
    throw new Error(`the model's input '${name}' is not in the data (which has ${keys.sort().join(', ')})`);
  }

  // a macrotask turn: a loop of resolved promises alone never lets a page's event loop run (a browser
  // page stalls after a second or so of it)
  const pause = () => new Promise((ok) => setTimeout(ok, 0));

  const per = (a) => a.shape.slice(1).reduce((x, y) => x * y, 1);

  function slice(a, start, end, squeeze) { // samples [start, end) of a; squeeze: one sample, no sample axis
    const n = per(a);
    const data = a.data.subarray(start * n, end * n);
    return { dtype: a.dtype, shape: squeeze ? a.shape.slice(1) : [end - start, ...a.shape.slice(1)], data };
  }

  function concat(pieces, stack) {
    const total = pieces.reduce((s, p) => s + p.data.length, 0);
    const data = new pieces[0].data.constructor(total);
    let off = 0;
    for (const p of pieces) { data.set(p.data, off); off += p.data.length; }
    const shape = stack ? [pieces.length, ...pieces[0].shape]
      : [pieces.reduce((s, p) => s + p.shape[0], 0), ...pieces[0].shape.slice(1)];
    return { dtype: pieces[0].dtype, shape, data };
  }

  class Engine {
    constructor(tf, wasm) {
      this.tf = tf;
      this.wasm = wasm; // the tfjs-backend-wasm module
      this.model = null;
      this.async = false;
    }

    // Select `name` ("wasm", "webgl", "cpu"); the backend that actually runs is returned.
    async useBackend(name, threads, wasmPaths) {
      const tf = this.tf;
      if (tf.getBackend() === name && this.backendReady) return name;
      if (name === 'wasm') {
        if (threads <= 1) tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false); // one thread: the SIMD build
        this.wasm.setWasmPaths(wasmPaths);
        if (threads > 0) this.wasm.setThreadsCount(threads);
      }
      let ok = false;
      try { ok = await tf.setBackend(name); } catch (e) { ok = false; }
      if (!ok || tf.getBackend() !== name) {
        throw new Error(`the TF.js backend '${name}' is not offered here (the ${name} backend failed to initialize)`);
      }
      await tf.ready();
      this.backendReady = true;
      return tf.getBackend();
    }

    describeBackend() {
      const tf = this.tf, name = tf.getBackend(), out = { backend: name, tfjs: tf.version_core || tf.version.tfjs };
      if (name === 'wasm') {
        out.threads = this.wasm.getThreadsCount ? this.wasm.getThreadsCount() : 1;
        out.simd = !!tf.env().getAsync && tf.env().get('WASM_HAS_SIMD_SUPPORT');
      }
      if (name === 'webgl') {
        try {
          const gl = tf.backend().gpgpu.gl;
          const ext = gl.getExtension('WEBGL_debug_renderer_info');
          out.renderer = ext ? gl.getParameter(ext.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
          out.webgl_version = tf.env().get('WEBGL_VERSION');
        } catch (e) { out.renderer = '?'; }
      }
      return out;
    }

    setModel(model) {
      if (this.model) this.model.dispose();
      this.model = model;
      this.async = false;
      const ins = model.inputs.map((t) => ({ name: t.name, shape: (t.shape || []).map((d) => (d > 0 ? d : null)),
        dtype: t.dtype }));
      const first = ins[0] ? ins[0].shape : [];
      this.batchLimit = first.length && first[0] ? first[0] : null;
      this.inputSpecs = ins;
      this.outputs = model.outputs.map((t) => t.name);
      return { inputs: ins, outputs: this.outputs, batch_limit: this.batchLimit };
    }

    prepare(feed) { // cast to what the model takes (outside the timed path)
      const tf = this.tf, out = {};
      for (const spec of this.inputSpecs) {
        const a = lookupInput(feed, spec.name);
        const want = spec.dtype === 'int32' ? Int32Array : spec.dtype === 'bool' ? Uint8Array : Float32Array;
        const data = a.data instanceof want ? a.data : want.from(a.data, (v) => Number(v));
        out[spec.name] = tf.tensor(data, a.shape, spec.dtype === 'bool' ? 'bool' : spec.dtype);
      }
      return out;
    }

    async run(feed) {
      let outs;
      if (!this.async) {
        try {
          outs = this.model.execute(feed, this.outputs);
        } catch (e) {
          if (!/executeAsync/.test(String(e && e.message))) throw e;
          this.async = true; // control flow: only the async executor runs it
        }
      }
      if (this.async) outs = await this.model.executeAsync(feed, this.outputs);
      outs = Array.isArray(outs) ? outs : [outs];
      const datas = await Promise.all(outs.map((t) => t.data()));
      const result = {};
      outs.forEach((t, i) => {
        result[this.outputs[i]] = { dtype: t.dtype === 'bool' ? 'uint8' : t.dtype, shape: t.shape, data: datas[i] };
        t.dispose();
      });
      return result;
    }

    dispose(feed) { for (const t of Object.values(feed)) t.dispose(); }

    async runAll(arrays, stacked) { // runtime_base.run_all
      const n = Object.values(arrays)[0].shape[0];
      const isStacked = (k) => stacked.includes(k);
      const pieces = [];
      const step = stacked.length ? 1 : (this.batchLimit || Math.min(n, 64));
      for (let start = 0; start < n; start += step) {
        const end = Math.min(n, start + step), part = {};
        for (const [k, a] of Object.entries(arrays)) part[k] = slice(a, start, end, stacked.length && isStacked(k));
        const feed = this.prepare(part);
        pieces.push(await this.run(feed));
        this.dispose(feed);
      }
      const out = {};
      for (const name of Object.keys(pieces[0])) out[name] = concat(pieces.map((p) => p[name]), stacked.length > 0);
      return out;
    }

    async bench(arrays, stacked, params) { // the worker's bench op and time_calls
      const batch = stacked.length ? 1 : (this.batchLimit || Number(params.batch || 1));
      const part = {};
      for (const [k, a] of Object.entries(arrays)) {
        part[k] = stacked.includes(k) ? slice(a, 0, 1, true) : slice(a, 0, Math.min(batch, a.shape[0]), false);
      }
      const feed = this.prepare(part);
      const warmup = Number(params.warmup ?? 10), minRuns = Number(params.min_runs ?? 50);
      const minS = Number(params.min_seconds ?? 1.0), maxS = Number(params.max_seconds ?? 60.0);
      const clock = () => performance.now() / 1000.0;
      let t0 = clock();
      await this.run(feed);
      const first = clock() - t0;
      for (let i = 0; i < warmup; i++) await this.run(feed);
      const times = [];
      const start = clock();
      for (;;) {
        t0 = clock();
        await this.run(feed);
        const t1 = clock();
        times.push(t1 - t0);
        const elapsed = t1 - start;
        if ((times.length >= minRuns && elapsed >= minS) || elapsed >= maxS || times.length >= 100000) break;
        if (times.length % 64 === 0) await pause(); // between timed calls: let the event loop run
      }
      this.dispose(feed);
      return { first_s: first, times_s: times, warmup, batch };
    }
  }

  return { Engine, lookupInput };
}));
