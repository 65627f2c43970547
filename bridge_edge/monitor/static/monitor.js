// bridge-edge bedside monitor page.
//
// Data: one WebSocket (/ws). Binary messages are waveform blocks (header + float32, see
// bridge_edge/monitor/frames.py); text messages are JSON (config, status, prediction, stats).
// Drawing: Canvas2D sweep (erase-bar) traces on a fixed time axis, played out a fixed delay
// behind the newest sample so bursty sources scroll smoothly.
// Safety: nothing received is ever parsed as HTML; every string goes through textContent.
"use strict";

(function () {
  const HEADER_BYTES = 24;
  const MAGIC = 0xbe;
  const ECG_MM_PER_S = 25;
  const ECG_MM_PER_MV = 10;
  const GUTTER_PX = 46; // left margin for the 1 mV calibration pulse
  const ERASE_PX = 14; // width of the erase bar ahead of the sweep
  const TIMELINE_S = 300;
  const AUDIO_PAUSE_S = 120;
  const LABEL_COLOURS = {
    sinus: "#33ff66", afib: "#ffd21f", avb: "#ff9f1a", paced: "#c77dff",
    bbb: "#4da3ff", ventricular: "#ff2a2a",
  };
  const TRACE_COLOURS = { ecg: "#33ff66", ppg: "#2fd9ff" };
  // why a low-SQI window was not scored (signals.quality.GATE_FACTORS), as the bed says it
  const SQI_CAUSE_TEXT = {
    pulse_quality: "poor pulse", motion: "motion", lost_pulse: "lost pulse", ecg_quality: "poor ECG",
  };

  // Read by automated browser tests: keep these names stable.
  const state = (window.monitorState = {
    connected: false,
    frames: 0, // waveform blocks received
    lateBlocks: 0, // blocks whose first sample was due before they arrived (playout delay too short)
    badFrames: 0, // binary messages that failed to parse
    fps: 0, // measured draw rate
    drawMs: 0, // mean time of the drawing code per frame (the rest is the browser's)
    label: null, // current (smoothed) rhythm label of the first bed
    labels: [], // per bed
    hr: [], // per bed, null when invalid
    timing: [], // per bed: {score, irregular, disagrees} of the pulse-timing baseline, or null
    alarms: [], // [{bed, code, category, priority, marker, text}]
    beds: 0,
    traces: 0,
    audioPaused: false,
  });

  let config = null;
  let beds = []; // [{el, traces: [Trace], timeline, history: [], hrAt}]
  let traceIndex = new Map(); // "bed:channel" -> Trace
  let clockOffset = null; // local seconds - server seconds, for the earliest-arriving block
  let lastStatusAt = 0;
  let socket = null;
  let reconnectDelay = 1000;

  const $ = (id) => document.getElementById(id);
  const nowS = () => performance.now() / 1000;
  const setText = (el, text) => { if (el.textContent !== text) el.textContent = text; };

  // --- connection ----------------------------------------------------------------------------

  function connect() {
    const token = new URLSearchParams(location.search).get("token");
    const protocols = ["bridge-edge.v1"];
    if (token) protocols.push("token." + token);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(scheme + "//" + location.host + "/ws", protocols);
    socket.binaryType = "arraybuffer";
    socket.onopen = () => { state.connected = true; reconnectDelay = 1000; showConnection(); };
    socket.onclose = () => {
      state.connected = false;
      showConnection();
      setTimeout(connect, reconnectDelay);
      reconnectDelay = Math.min(reconnectDelay * 2, 10000);
    };
    socket.onmessage = (event) => {
      if (event.data instanceof ArrayBuffer) onBlock(event.data);
      else onJSON(JSON.parse(event.data));
    };
  }

  function showConnection() {
    const el = $("connection");
    el.className = state.connected ? "up" : "down";
    setText(el, state.connected ? "● live" : "● no connection to the monitor server");
    renderAlarms();
  }

  function onJSON(msg) {
    if (msg.type === "config") onConfig(msg);
    else if (msg.type === "status") onStatus(msg);
    else if (msg.type === "prediction") onPrediction(msg);
    else if (msg.type === "stats") onStats(msg);
    else if (msg.type === "beats") onBeats(msg);
  }

  // --- waveform blocks -------------------------------------------------------------------------

  function onBlock(buffer) {
    const view = new DataView(buffer);
    if (buffer.byteLength < HEADER_BYTES || view.getUint8(0) !== MAGIC) { state.badFrames++; return; }
    const bed = view.getUint16(2, true);
    const channel = view.getUint16(4, true);
    const t0 = view.getFloat64(8, true);
    const fs = view.getFloat32(16, true);
    const count = view.getUint32(20, true);
    if (buffer.byteLength !== HEADER_BYTES + 4 * count) { state.badFrames++; return; }
    state.frames++;
    const trace = traceIndex.get(bed + ":" + channel);
    if (!trace || count === 0) return;
    const samples = new Float32Array(buffer, HEADER_BYTES, count);
    // Clock offset = the smallest (arrival - sample time) seen: the fastest path from sensor to
    // page. It creeps up slowly so a drifting sensor clock is followed.
    const tEnd = t0 + (count - 1) / fs;
    const offset = nowS() - tEnd;
    if (clockOffset === null || offset < clockOffset) clockOffset = offset;
    else clockOffset += (offset - clockOffset) * 0.002;
    if (t0 < trace.drawnT) state.lateBlocks++; // its first sample was due already: the trace jumps
    trace.push(t0, fs, samples);
  }

  class Trace {
    constructor(bedIndex, spec, bedName, root) {
      this.bed = bedIndex;
      this.spec = spec;
      this.kind = spec.kind;
      this.colour = TRACE_COLOURS[spec.kind] || "#fff";
      this.root = root;
      this.grid = root.querySelector("canvas.grid");
      this.wave = root.querySelector("canvas.wave");
      this.ctx = this.wave.getContext("2d");
      this.blocks = []; // {t0, dt, data, next}
      this.beats = []; // times of detected beats not yet marked
      this.drawnT = -Infinity; // playout time drawn up to
      this.last = null; // {x, y, t} of the last drawn sample
      this.cursorT = null;
      this.range = null; // pleth auto-scale {lo, hi} for the current sweep
      this.sweepData = []; // the blocks received during the current sweep, for the next range
      this.rangeAt = 0; // when the range was last computed during the first sweep
      this.firstSweep = true;
      root.classList.add(spec.kind);
      setText(root.querySelector(".trace-name"), spec.kind === "ecg" ? spec.name : "PLETH " + spec.name);
      setText(root.querySelector(".trace-scale"),
        spec.kind === "ecg" ? ECG_MM_PER_S + " mm/s  " + ECG_MM_PER_MV + " mm/mV" : ECG_MM_PER_S + " mm/s  auto-scaled");
      setText(root.querySelector(".trace-filter"), "filter " + spec.filter);
      setText(root.querySelector(".trace-source"), bedName + " · " + spec.fs + " Hz");
      this.sqiEl = root.querySelector(".sqi-value");
    }

    push(t0, fs, data) {
      this.blocks.push({ t0: t0, dt: 1 / fs, data: data, next: 0 });
      if (this.kind === "ecg") return;
      this.sweepData.push(data);
      // Until one sweep is complete the pleth range follows the data (once a second).
      if (this.range === null || (this.firstSweep && nowS() - this.rangeAt > 1)) {
        this.range = robustRange(this.sweepData);
        this.rangeAt = nowS();
      }
    }

    resize() {
      const w = Math.max(100, this.root.clientWidth);
      const h = Math.max(40, this.root.clientHeight);
      this.grid.width = this.wave.width = w;
      this.grid.height = this.wave.height = h;
      this.pxPerMm = (w - GUTTER_PX) / (config.sweep_s * ECG_MM_PER_S);
      this.last = null;
      this.cursorT = null;
      this.drawGrid();
    }

    x(t) {
      const sweep = config.sweep_s;
      const phase = ((t % sweep) + sweep) % sweep;
      return GUTTER_PX + (phase / sweep) * (this.wave.width - GUTTER_PX);
    }

    y(v) {
      const h = this.wave.height;
      if (this.kind === "ecg") return h * 0.55 - v * ECG_MM_PER_MV * this.pxPerMm;
      const r = this.range || { lo: -1, hi: 1 };
      const span = r.hi - r.lo || 1;
      return h * 0.85 - ((v - r.lo) / span) * h * 0.65;
    }

    drawGrid() {
      const g = this.grid.getContext("2d");
      const w = this.grid.width, h = this.grid.height, mm = this.pxPerMm;
      g.clearRect(0, 0, w, h);
      const minor = this.kind === "ecg" ? "rgba(255,70,70,0.10)" : null;
      const major = this.kind === "ecg" ? "rgba(255,70,70,0.26)" : "rgba(120,140,160,0.14)";
      const lines = (step, colour) => {
        g.strokeStyle = colour;
        g.lineWidth = 1;
        g.beginPath();
        for (let x = GUTTER_PX; x <= w; x += step) { g.moveTo(Math.round(x) + 0.5, 0); g.lineTo(Math.round(x) + 0.5, h); }
        const base = this.kind === "ecg" ? h * 0.55 : h;
        for (let y = base; y >= 0; y -= step) { g.moveTo(GUTTER_PX, Math.round(y) + 0.5); g.lineTo(w, Math.round(y) + 0.5); }
        for (let y = base + step; y <= h; y += step) { g.moveTo(GUTTER_PX, Math.round(y) + 0.5); g.lineTo(w, Math.round(y) + 0.5); }
        g.stroke();
      };
      if (minor && mm >= 2.5) lines(mm, minor); // 1 mm = 40 ms / 0.1 mV
      lines(5 * mm, major); // 5 mm = 200 ms / 0.5 mV
      if (this.kind === "ecg") {
        // 1 mV calibration pulse: 10 mm high, 5 mm (200 ms) wide, on the baseline.
        const base = Math.round(h * 0.55) + 0.5, top = base - ECG_MM_PER_MV * mm;
        const x0 = 8, x1 = x0 + 4, x2 = x1 + 5 * mm;
        g.strokeStyle = this.colour;
        g.lineWidth = 1.5;
        g.beginPath();
        g.moveTo(x0, base); g.lineTo(x1, base); g.lineTo(x1, top); g.lineTo(x2, top); g.lineTo(x2, base);
        g.lineTo(x2 + 4, base);
        g.stroke();
        g.fillStyle = "rgba(200,210,220,0.6)";
        g.font = "10px sans-serif";
        g.fillText("1 mV", 6, top - 4);
      }
    }

    // Erase ahead of the cursor, then draw every sample whose time is now due.
    draw(T) {
      const ctx = this.ctx, w = this.wave.width, h = this.wave.height, sweep = config.sweep_s;
      if (this.cursorT === null || T - this.cursorT >= sweep) {
        ctx.clearRect(0, 0, w, h);
        this.cursorT = T;
      } else if (T > this.cursorT) {
        const a = this.x(this.cursorT);
        let b = this.x(T);
        if (b < a) b += w - GUTTER_PX; // the cursor wrapped to the left edge
        this.clearSpan(a + ERASE_PX, b + ERASE_PX);
        if (Math.floor(T / sweep) !== Math.floor(this.cursorT / sweep)) this.newSweep();
        this.cursorT = T;
      }

      ctx.strokeStyle = this.colour;
      ctx.lineWidth = 1.6;
      ctx.lineJoin = "round";
      ctx.beginPath();
      let last = this.last;
      if (last) ctx.moveTo(last.x, last.y); // continue the line from the previous frame
      let drawn = 0;
      while (this.blocks.length) {
        const b = this.blocks[0];
        if (b.t0 + b.data.length * b.dt < T - sweep) { // older than the sweep (a hidden tab): skip
          this.blocks.shift();
          continue;
        }
        const due = Math.min(b.data.length, Math.floor((T - b.t0) / b.dt) + 1);
        for (let i = b.next; i < due; i++) {
          const t = b.t0 + i * b.dt;
          const x = this.x(t), y = Math.max(1, Math.min(h - 1, this.y(b.data[i])));
          if (last && x >= last.x && t - last.t < 3 * b.dt) ctx.lineTo(x, y);
          else ctx.moveTo(x, y);
          last = { x: x, y: y, t: t };
          drawn++;
        }
        b.next = Math.max(b.next, due);
        if (b.next < b.data.length) break;
        this.blocks.shift();
      }
      if (drawn) ctx.stroke();
      this.last = last;
      this.drawnT = T;
      this.drawBeatMarkers(T);
    }

    // A small marker above the trace at each detected beat, as it plays out.
    drawBeatMarkers(T) {
      let marked = false;
      while (this.beats.length && this.beats[0] <= T) {
        const t = this.beats.shift();
        if (t < T - config.sweep_s) continue;
        const x = this.x(t);
        this.ctx.fillStyle = "rgba(255,255,255,0.85)";
        this.ctx.beginPath();
        this.ctx.moveTo(x - 4, 18);
        this.ctx.lineTo(x + 4, 18);
        this.ctx.lineTo(x, 25);
        this.ctx.fill();
        marked = true;
      }
      if (marked) beds[this.bed].beat(this);
    }

    // Clear [a, b) in sweep coordinates, where x past the right edge continues at the left one.
    clearSpan(a, b) {
      const w = this.wave.width, h = this.wave.height, span = w - GUTTER_PX;
      while (a >= w) { a -= span; b -= span; }
      if (b <= w) { this.ctx.clearRect(a, 0, b - a, h); return; }
      this.ctx.clearRect(a, 0, w - a, h);
      this.ctx.clearRect(GUTTER_PX, 0, Math.min(b - w, span), h);
    }

    // Pleth is re-scaled once per sweep (from the last sweep's 5th-95th percentiles, so one
    // motion spike does not flatten the next sweep), never mid-sweep.
    newSweep() {
      if (this.kind === "ecg" || !this.sweepData.length) return;
      this.range = robustRange(this.sweepData);
      this.firstSweep = false;
      this.sweepData = [];
    }
  }

  function robustRange(blocks) {
    const n = blocks.reduce((sum, b) => sum + b.length, 0);
    const all = new Float32Array(n);
    let offset = 0;
    for (const b of blocks) { all.set(b, offset); offset += b.length; }
    all.sort();
    const lo = all[Math.floor(0.05 * (n - 1))], hi = all[Math.ceil(0.95 * (n - 1))];
    const pad = 0.15 * (hi - lo || 1);
    return { lo: lo - pad, hi: hi + pad };
  }

  // --- config: build one section per bed ----------------------------------------------------

  function onConfig(cfg) {
    // Every (re)connection starts with a config: rebuild, since a restarted server has a new
    // clock and queued blocks from the old one would never come due.
    config = cfg;
    clockOffset = null;
    showProvenance(cfg.provenance || {});
    const root = $("beds");
    root.replaceChildren();
    beds = [];
    traceIndex = new Map();
    cfg.beds.forEach((spec, index) => {
      const el = $("bed-template").content.firstElementChild.cloneNode(true);
      setText(el.querySelector(".bed-name"), "Bed " + (index + 1) + " · " + spec.name);
      const bed = { el: el, spec: spec, traces: [], history: [], hrAt: 0, timeline: el.querySelector("canvas.timeline") };
      const heart = el.querySelector(".heart");
      bed.beat = (trace) => { // flash the heart symbol on the beats of the bed's first trace
        if (trace !== bed.traces[0]) return;
        heart.classList.add("on");
        setTimeout(() => heart.classList.remove("on"), 150);
      };
      for (const traceSpec of spec.traces) {
        const traceEl = $("trace-template").content.firstElementChild.cloneNode(true);
        el.querySelector(".traces").appendChild(traceEl);
        const trace = new Trace(index, traceSpec, spec.name, traceEl);
        bed.traces.push(trace);
        traceIndex.set(index + ":" + traceSpec.channel, trace);
      }
      root.appendChild(el);
      beds.push(bed);
    });
    state.beds = beds.length;
    state.traces = traceIndex.size;
    state.labels = beds.map(() => null);
    state.hr = beds.map(() => null);
    state.timing = beds.map(() => null);
    resizeAll();
  }

  function resizeAll() {
    for (const bed of beds) {
      for (const trace of bed.traces) trace.resize();
      bed.timeline.width = Math.max(100, bed.timeline.clientWidth);
      bed.timeline.height = Math.max(10, bed.timeline.clientHeight);
      drawTimeline(bed);
    }
  }

  // --- status: numerics, rhythm, alarms ---------------------------------------------------

  let serverAlarms = [];

  function onStatus(msg) {
    lastStatusAt = nowS();
    serverAlarms = [];
    msg.beds.forEach((s, index) => {
      const bed = beds[index];
      if (!bed) return;
      state.labels[index] = s.label;
      state.hr[index] = s.hr_bpm;
      if (s.hr_bpm !== null) bed.hrAt = lastStatusAt;
      const hrEl = bed.el.querySelector(".hr-value");
      setText(hrEl, s.hr_bpm === null ? "---" : String(s.hr_bpm));
      hrEl.classList.toggle("invalid", s.hr_bpm === null);
      const rhythm = bed.el.querySelector(".rhythm-value");
      // a gated window (non-finite input, gap, low SQI) leaves the last label standing, marked unscored
      const unscored = s.scored === false && s.gated !== "warmup";
      // a rhythm that will alarm once it has held long enough says when (AlarmRules.onset_s)
      const pending = s.alarm_in_s > 0 ? " (alarm in " + Math.ceil(s.alarm_in_s) + " s)" : "";
      const why = s.gated === "low_sqi" && s.sqi_cause ? SQI_CAUSE_TEXT[s.sqi_cause] || s.sqi_cause : s.gated;
      setText(rhythm, (s.label ? s.label : "---") + (unscored ? " (unscored: " + why + ")" : pending));
      rhythm.classList.toggle("alarm-label", s.alarms.some((a) => a.category === "physiological"));
      rhythm.classList.toggle("uncertain", s.sqi_level === "unacceptable" || !s.label || unscored);
      renderProbs(bed.el.querySelector(".probs"), s.probs);
      renderTiming(bed.el.querySelector(".timing-block"), index, s);
      s.traces.forEach((t, i) => {
        const trace = bed.traces[i];
        if (!trace) return;
        setText(trace.sqiEl, t.sqi === null ? "--" : t.sqi.toFixed(2) + " " + t.sqi_level);
        trace.sqiEl.className = "sqi-value " + t.sqi_level;
      });
      serverAlarms.push(...s.alarms);
    });
    state.label = state.labels.length ? state.labels[0] : null;
    renderAlarms();
  }

  // The pulse-timing baseline: a small secondary read-out beside the model, never an alarm. It
  // says whether the pulse intervals are irregular (score >= the baseline's threshold) and
  // marks the bed when model and timing disagree, so a clinician knows to look at the trace.
  function renderTiming(el, index, s) {
    const thr = config.timing_threshold;
    const score = s.timing_score;
    const valueEl = el.querySelector(".timing-value");
    if (score === null || score === undefined || thr === undefined) {
      state.timing[index] = null;
      setText(valueEl, "---");
      el.classList.remove("disagree", "irregular");
      setText(el.querySelector(".timing-note"), "");
      return;
    }
    const irregular = score >= thr;
    const disagrees = !!s.label && (s.label === "afib") !== irregular;
    state.timing[index] = { score: score, irregular: irregular, disagrees: disagrees };
    setText(valueEl, (irregular ? "irregular " : "regular ") + score.toFixed(2));
    el.classList.toggle("irregular", irregular);
    el.classList.toggle("disagree", disagrees);
    // the runtime's regular-rhythm rule moved the model's AF probability: say so beside timing
    const note = disagrees ? "model and timing disagree" : s.af_ruled_out ? "AF ruled out: regular beats" : "";
    setText(el.querySelector(".timing-note"), note);
  }

  function renderProbs(el, probs) {
    const entries = Object.entries(probs || {}).sort((a, b) => b[1] - a[1]);
    if (el.childElementCount !== entries.length * 3) {
      el.replaceChildren();
      for (let i = 0; i < entries.length; i++) {
        const name = document.createElement("span");
        const bar = document.createElement("div");
        bar.className = "prob-bar";
        bar.appendChild(document.createElement("div"));
        const value = document.createElement("span");
        value.className = "prob-value";
        el.append(name, bar, value);
      }
    }
    entries.forEach(([label, p], i) => {
      setText(el.children[3 * i], label);
      const fill = el.children[3 * i + 1].firstChild;
      fill.style.width = (100 * p).toFixed(1) + "%";
      fill.style.background = LABEL_COLOURS[label] || "#2fd9ff";
      setText(el.children[3 * i + 2], (100 * p).toFixed(0) + "%");
    });
  }

  function currentAlarms() {
    const list = serverAlarms.slice();
    if (!state.connected) {
      list.unshift({ bed: -1, bed_name: "monitor", code: "connection", category: "technical",
        priority: "high", marker: "***", text: "MONITOR CONNECTION LOST" });
    } else if (lastStatusAt && nowS() - lastStatusAt > 3) {
      list.unshift({ bed: -1, bed_name: "monitor", code: "server_stalled", category: "technical",
        priority: "high", marker: "***", text: "MONITOR NOT UPDATING" });
    }
    return list;
  }

  function renderAlarms() {
    const list = currentAlarms();
    state.alarms = list;
    const key = JSON.stringify(list.map((a) => a.bed + a.code + a.priority));
    if (key === renderAlarms.key) return;
    renderAlarms.key = key;
    const groups = { physiological: $("alarms-physiological"), technical: $("alarms-technical") };
    groups.physiological.replaceChildren();
    groups.technical.replaceChildren();
    for (const alarm of list) {
      const el = document.createElement("div");
      el.className = "alarm " + alarm.priority + " " + alarm.category;
      const where = alarm.bed >= 0 ? "Bed " + (alarm.bed + 1) + " " : "";
      el.textContent = alarm.marker + " " + where + alarm.text;
      groups[alarm.category === "physiological" ? "physiological" : "technical"].appendChild(el);
    }
    audio.update(list);
  }

  function onBeats(msg) {
    const trace = traceIndex.get(msg.bed + ":" + msg.channel);
    if (trace) trace.beats.push(...msg.times);
  }

  // --- predictions: the rhythm timeline ---------------------------------------------------

  function onPrediction(msg) {
    const bed = beds[msg.bed];
    if (!bed) return;
    bed.history.push({ t: msg.t_end, label: msg.label, gated: msg.gated });
    while (bed.history.length && bed.history[0].t < msg.t_end - TIMELINE_S) bed.history.shift();
    drawTimeline(bed);
  }

  function drawTimeline(bed) {
    const c = bed.timeline, g = c.getContext("2d");
    const w = c.width, h = c.height;
    g.fillStyle = "#05080b";
    g.fillRect(0, 0, w, h);
    const hist = bed.history;
    if (!hist.length) return;
    const tNow = hist[hist.length - 1].t;
    const x = (t) => w - ((tNow - t) / TIMELINE_S) * (w - 120) - 4;
    for (let i = 0; i < hist.length; i++) {
      const p = hist[i];
      const x0 = x(i ? hist[i - 1].t : p.t - 2), x1 = x(p.t);
      g.fillStyle = p.label ? LABEL_COLOURS[p.label] || "#888" : "#333";
      g.globalAlpha = p.gated ? 0.35 : 0.9;
      g.fillRect(x0, 6, Math.max(1, x1 - x0), h - 12);
    }
    g.globalAlpha = 1;
    g.fillStyle = "#6b7785";
    g.font = "10px sans-serif";
    for (let m = 1; m < TIMELINE_S / 60; m++) g.fillText("-" + m + " min", x(tNow - 60 * m) - 14, h - 2);
  }

  // --- provenance and stats ---------------------------------------------------------------

  function showProvenance(p) {
    const bundle = [p.bundle_name, p.bundle_version].filter(Boolean).join(" ");
    setText($("prov-bundle"), "bundle " + (bundle || "?") + (p.bridge ? " (" + p.bridge + ")" : ""));
  }

  const fmt = (v, digits, unit) => (typeof v === "number" ? v.toFixed(digits) + unit : "--");

  function onStats(msg) {
    const p = msg.pipeline || {};
    setText($("prov-engine"), "engine " + (p.engine || "--") + (p.precision ? " " + p.precision : ""));
    setText($("prov-latency"), "latency p50 " + fmt(p.latency_p50_ms, 1, " ms") + " p99 " + fmt(p.latency_p99_ms, 1, " ms"));
    setText($("prov-lag"), "lag " + (typeof p.lag_s === "number" && p.lag_s < 1 ? fmt(Math.max(0, 1000 * p.lag_s), 0, " ms") : fmt(p.lag_s, 2, " s")));
    setText($("prov-dropped"), "dropped " + (typeof p.dropped_samples === "number" ? p.dropped_samples : "--") + " samples");
    const d = msg.display || {};
    setText($("prov-display"), "display " + state.fps.toFixed(0) + " fps, delay " +
      (config ? config.playout_delay_s : "--") + " s, " + (d.dropped_blocks || 0) + " blocks dropped");
  }

  // --- audio (WebAudio beeps; IEC 60601-1-8 pulse counts) -----------------------------------

  const audio = {
    ctx: null,
    pausedUntil: 0,
    nextAt: 0,
    topPriority: null,
    PATTERN: { high: { pulses: [5, 5], repeat: 10, freq: 880 }, medium: { pulses: [3], repeat: 20, freq: 660 },
      low: { pulses: [1], repeat: 0, freq: 520 } },
    enable() {
      if (!this.ctx && window.AudioContext) this.ctx = new AudioContext();
      if (this.ctx && this.ctx.state === "suspended") this.ctx.resume();
    },
    update(list) {
      const order = ["high", "medium", "low"];
      const top = order.find((p) => list.some((a) => a.priority === p)) || null;
      if (top !== this.topPriority) { this.topPriority = top; this.nextAt = 0; }
    },
    tick() {
      const paused = nowS() < this.pausedUntil;
      state.audioPaused = paused;
      const button = $("audio");
      button.classList.toggle("paused", paused);
      setText(button, paused ? "AUDIO PAUSED " + formatSeconds(this.pausedUntil - nowS()) : "AUDIO ON");
      if (!this.topPriority || paused || !this.ctx || nowS() < this.nextAt) return;
      const pattern = this.PATTERN[this.topPriority];
      this.nextAt = pattern.repeat ? nowS() + pattern.repeat : Infinity;
      let t = this.ctx.currentTime + 0.05;
      for (const burst of pattern.pulses) {
        for (let i = 0; i < burst; i++) { this.beep(t, pattern.freq); t += 0.2; }
        t += 0.5;
      }
    },
    beep(at, freq) {
      const osc = this.ctx.createOscillator(), gain = this.ctx.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, at);
      gain.gain.exponentialRampToValueAtTime(0.2, at + 0.01);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.14);
      osc.connect(gain).connect(this.ctx.destination);
      osc.start(at);
      osc.stop(at + 0.15);
    },
  };

  function formatSeconds(s) {
    const m = Math.floor(s / 60), r = Math.floor(s % 60);
    return m + ":" + String(r).padStart(2, "0");
  }

  $("audio").addEventListener("click", () => {
    audio.enable();
    audio.pausedUntil = nowS() < audio.pausedUntil ? 0 : nowS() + AUDIO_PAUSE_S;
    audio.tick();
  });
  // Browsers start audio only after a user gesture: any click arms it.
  document.addEventListener("pointerdown", () => audio.enable(), { once: true });

  // --- frame loop -------------------------------------------------------------------------

  let fpsCount = 0;
  let fpsSince = nowS();

  let drawMsSum = 0;

  function frame() {
    const now = nowS();
    if (config && clockOffset !== null) {
      const T = now - clockOffset - config.playout_delay_s;
      for (const bed of beds) for (const trace of bed.traces) trace.draw(T);
    }
    drawMsSum += 1000 * (nowS() - now);
    // HR is never stale: blank it if no fresh value came within the timeout.
    beds.forEach((bed, i) => {
      if (state.hr[i] !== null && (now - bed.hrAt > (config ? config.hr_timeout_s : 6) || !state.connected)) {
        state.hr[i] = null;
        const hrEl = bed.el.querySelector(".hr-value");
        setText(hrEl, "---");
        hrEl.classList.add("invalid");
      }
    });
    fpsCount++;
    if (now - fpsSince >= 1) {
      state.fps = fpsCount / (now - fpsSince);
      state.drawMs = drawMsSum / fpsCount;
      drawMsSum = 0;
      fpsCount = 0;
      fpsSince = now;
      setText($("clock"), new Date().toLocaleTimeString([], { hour12: false }));
      renderAlarms();
      audio.tick();
    }
    requestAnimationFrame(frame);
  }

  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(resizeAll, 100);
  });

  connect();
  requestAnimationFrame(frame);
})();
