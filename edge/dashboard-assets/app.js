// fer-edge dashboard: live data from /events (Server-Sent Events), drawn with plain DOM and a
// hand-written canvas timeline. No libraries, no CDN: the page works on a Pi with no internet.
"use strict";

(() => {
  // Colours by label index: the labels come from the model's contract, never from this file.
  const PALETTE = ["#4e79a7", "#59a14f", "#e15759", "#f28e2b", "#edc948",
                   "#b07aa1", "#76b7b2", "#ff9da7", "#9c755f", "#bab0ac"];
  const MAX_ROWS = 8; // tracks drawn on the timeline (the most recently seen)
  const st = { labels: [], windowS: 300, t: 0, segs: new Map(), ticks: 0 };
  const $ = (id) => document.getElementById(id);
  const color = (k) => PALETTE[k % PALETTE.length];

  function buildBars(el) {
    el.replaceChildren();
    st.labels.forEach((label, k) => {
      const row = document.createElement("div");
      row.className = "row";
      const name = document.createElement("span");
      name.textContent = label;
      const track = document.createElement("div");
      track.className = "track";
      const fill = document.createElement("div");
      fill.className = "fill";
      fill.style.background = color(k);
      track.append(fill);
      const value = document.createElement("span");
      value.className = "value";
      row.append(name, track, value);
      el.append(row);
    });
  }

  function setBars(el, values) {
    [...el.children].forEach((row, k) => {
      const v = values[k] || 0;
      row.children[1].firstChild.style.width = `${(100 * v).toFixed(1)}%`;
      row.children[2].textContent = `${Math.round(100 * v)}%`;
    });
  }

  function buildLegend() {
    const el = $("legend");
    el.replaceChildren();
    st.labels.forEach((label, k) => {
      const item = document.createElement("span");
      item.textContent = label;
      item.style.setProperty("--c", color(k));
      el.append(item);
    });
  }

  function applyNow(d) {
    st.t = d.t;
    $("fps").textContent = `${d.fps.toFixed(1)} fps`;
    $("frames").textContent = d.frames;
    const faces = d.faces.length;
    $("faces").textContent = `${faces} face${faces === 1 ? "" : "s"} in view`;
    setBars($("distribution"), d.distribution);
    const rows = Object.entries(d.stages_ms).map(([stage, ms]) => {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.textContent = stage;
      const td = document.createElement("td");
      td.textContent = `${ms.toFixed(2)} ms`;
      tr.append(th, td);
      return tr;
    });
    $("stages").replaceChildren(...rows);
  }

  function prune() {
    const lo = st.t - st.windowS;
    for (const [id, s] of st.segs) if (s[4] < lo) st.segs.delete(id);
  }

  function niceStep(span) {
    for (const s of [5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600]) if (span / s <= 8) return s;
    return 7200;
  }

  function drawTimeline() {
    const cv = $("timeline");
    const last = new Map(); // track -> latest end time
    for (const s of st.segs.values()) last.set(s[1], Math.max(last.get(s[1]) ?? -Infinity, s[4]));
    const tracks = [...last.entries()].sort((a, b) => b[1] - a[1]).slice(0, MAX_ROWS)
      .map(([track]) => track).sort((a, b) => a - b);
    const row = 24, top = 20, left = 72;
    const cssW = cv.clientWidth || 600, cssH = top + row * Math.max(1, tracks.length) + 4;
    const dpr = window.devicePixelRatio || 1;
    cv.style.height = `${cssH}px`;
    cv.width = Math.round(cssW * dpr);
    cv.height = Math.round(cssH * dpr);
    const ctx = cv.getContext("2d");
    ctx.scale(dpr, dpr);
    ctx.clearRect(0, 0, cssW, cssH);
    const t1 = st.t, t0 = t1 - st.windowS, w = cssW - left - 8;
    const x = (t) => left + ((t - t0) / st.windowS) * w;
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    const step = niceStep(st.windowS);
    for (let ago = 0; ago <= st.windowS; ago += step) {
      const gx = x(t1 - ago);
      ctx.fillStyle = "#2a2f38";
      ctx.fillRect(gx, top - 4, 1, cssH - top);
      ctx.fillStyle = "#8a929e";
      const text = ago === 0 ? "now" : ago % 60 === 0 ? `-${ago / 60} min` : `-${ago} s`;
      const tw = ctx.measureText(text).width;
      ctx.fillText(text, Math.min(cssW - tw - 2, Math.max(left, gx - tw / 2)), top / 2);
    }
    const minW = Math.max(1, w / (st.windowS * 30)); // at least one frame wide
    tracks.forEach((track, r) => {
      const y = top + r * row;
      ctx.fillStyle = "#8a929e";
      ctx.fillText(`face ${track}`, 6, y + row / 2);
      for (const s of st.segs.values()) {
        if (s[1] !== track || s[4] < t0) continue;
        const a = x(Math.max(s[3], t0)), b = x(s[4]);
        ctx.fillStyle = color(s[2]);
        ctx.fillRect(a, y + 3, Math.max(minW, b - a), row - 6);
      }
    });
    if (!tracks.length) {
      ctx.fillStyle = "#8a929e";
      ctx.fillText("no face seen yet", left, top + row / 2);
    }
  }

  function drawShare() {
    const total = new Array(st.labels.length).fill(0);
    const lo = st.t - st.windowS;
    for (const s of st.segs.values()) total[s[2]] += Math.max(1 / 30, s[4] - Math.max(s[3], lo));
    const sum = total.reduce((a, b) => a + b, 0);
    setBars($("share"), total.map((v) => (sum ? v / sum : 0)));
  }

  function render() {
    prune();
    drawTimeline();
    drawShare();
    document.body.dataset.segments = st.segs.size;
    document.body.dataset.ticks = st.ticks;
  }

  function setStatus(text, cls) {
    const el = $("status");
    el.textContent = text;
    el.className = `status ${cls}`;
  }

  const events = new EventSource("events");
  events.addEventListener("hello", (e) => {
    const d = JSON.parse(e.data);
    st.labels = d.labels;
    st.windowS = d.window_s;
    $("info").textContent = `${d.model} · ${d.source} · ${d.labels.length} classes`;
    const min = d.window_s / 60;
    $("span").textContent = `(last ${Number.isInteger(min) ? `${min} min` : `${d.window_s} s`})`;
    buildBars($("distribution"));
    buildBars($("share"));
    buildLegend();
    st.segs.clear();
    for (const s of d.segments) st.segs.set(s[0], s);
    applyNow(d);
    render();
  });
  events.addEventListener("tick", (e) => {
    const d = JSON.parse(e.data);
    for (const s of d.segments) st.segs.set(s[0], s);
    st.ticks += 1;
    applyNow(d);
    render();
  });
  events.onopen = () => setStatus("live", "live");
  events.onerror = () => setStatus("disconnected, retrying…", "down");

  const video = $("video");
  video.addEventListener("error", () => {
    setTimeout(() => { video.src = `video.mjpg?retry=${Date.now()}`; }, 2000);
  });
  window.addEventListener("resize", () => st.labels.length && drawTimeline());
  window.ferDashboard = { state: st };
})();
