// The live session page: one EventSource, charts drawn with plotly.js (served by the dashboard
// from the plotly wheel), tables rebuilt from each snapshot, and the operator's controls.
"use strict";
(function () {
  const root = document.getElementById("live");
  const key = root.dataset.key;
  const MAX_BROWSER_POINTS = 20000;
  const $ = (id) => document.getElementById(id);
  const esc = (v) => String(v === null || v === undefined ? "" : v)
    .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  const num = (v, d = 2) => (v === null || v === undefined || Number.isNaN(v)) ? "–"
    : Number(v).toLocaleString(undefined, {minimumFractionDigits: d, maximumFractionDigits: d});
  const t = (ns) => new Date(ns / 1e6);
  let symbol = null;
  let peak = -Infinity;
  let frames = 0;
  const layout = (title, extra) => Object.assign({
    title: {text: title, font: {size: 13}}, margin: {l: 55, r: 50, t: 28, b: 28},
    height: 240, showlegend: true, legend: {orientation: "h", y: -0.18},
    xaxis: {type: "date"}, uirevision: "keep",
  }, extra || {});
  const config = {displaylogo: false, responsive: true};

  function drawdowns(eq) {
    return eq.map((v) => { if (v > peak) peak = v; return peak > 0 ? (v / peak - 1) * 100 : 0; });
  }

  function fullDraw(f) {
    const s = f.series;
    peak = -Infinity;
    const clock = s.clock_ns.map(t), wall = s.wall_ns.map(t);
    Plotly.react("equity", [
      {x: clock, y: s.equity, name: "equity", type: "scattergl", mode: "lines",
       line: {color: "#1f6feb", width: 1.4}},
      {x: clock, y: drawdowns(s.equity), name: "drawdown %", type: "scattergl", mode: "lines",
       yaxis: "y2", fill: "tozeroy", line: {color: "#d1242f", width: 1}},
    ], layout("Equity and drawdown (session clock)", {height: 330,
      yaxis: {domain: [0.38, 1], title: "equity"}, yaxis2: {domain: [0, 0.3], title: "dd %"}}),
    config);
    Plotly.react("latency", [
      {x: wall, y: s.p50_us, name: "p50 µs", mode: "lines", line: {color: "#1a7f37"}},
      {x: wall, y: s.p99_us, name: "p99 µs", mode: "lines", line: {color: "#bc4c00"}},
    ], layout("Decision latency per snapshot window (µs)"), config);
    Plotly.react("throughput", [
      {x: wall, y: s.bars_s, name: "bars/s", mode: "lines"},
      {x: wall, y: s.decisions_s, name: "decisions/s", mode: "lines"},
    ], layout("Throughput"), config);
    Plotly.react("resources", [
      {x: wall, y: s.cpu_pct, name: "CPU %", mode: "lines", line: {color: "#8250df"}},
      {x: wall, y: s.rss_mb, name: "RSS MB", mode: "lines", yaxis: "y2",
       line: {color: "#0a3069"}},
    ], layout("Session process", {yaxis: {title: "CPU %"},
      yaxis2: {title: "RSS MB", overlaying: "y", side: "right"}}), config);
    drawPrice(f, true);
    drawStages(f, true);
  }

  // per-stage latency of a profiled session: p50 (solid) and p99 (dotted) of each stage,
  // one legend entry per stage (clicking it hides both); redrawn from what the page keeps
  const STAGE_POINTS = 2000;
  const stageState = {x: [], cols: {}};
  function drawStages(f, full) {
    const cols = f.stages || {};
    const n = f.series.wall_ns.length;
    if (full) { stageState.x = []; stageState.cols = {}; }
    const before = stageState.x.length;
    stageState.x.push(...f.series.wall_ns.map(t));
    for (const [k, v] of Object.entries(cols)) {
      if (!stageState.cols[k]) stageState.cols[k] = new Array(before).fill(null);
      stageState.cols[k].push(...v);
    }
    for (const col of Object.values(stageState.cols)) while (col.length < before + n) col.push(null);
    const extra = stageState.x.length - STAGE_POINTS;
    if (extra > 0) {
      stageState.x.splice(0, extra);
      for (const col of Object.values(stageState.cols)) col.splice(0, extra);
    }
    if (!full && !n) return;
    const names = Array.from(new Set(Object.keys(stageState.cols).map((k) => k.split(" ")[0])));
    const traces = [];
    names.forEach((name, i) => {
      for (const q of ["p50", "p99"]) {
        const y = stageState.cols[`${name} ${q}`];
        if (!y) continue;
        traces.push({x: stageState.x, y: y, name: `${name}`, legendgroup: name,
          showlegend: q === "p50", mode: "lines", connectgaps: true,
          line: {width: q === "p50" ? 1.6 : 1, dash: q === "p50" ? "solid" : "dot",
            color: `hsl(${(i * 137) % 360},60%,42%)`}});
      }
    });
    Plotly.react("stages", traces, layout(names.length
      ? "Stage latency, p50 solid · p99 dotted (µs, log)"
      : "Stage latency: the session is not profiled", {yaxis: {type: "log"}}), config);
  }

  const priceState = {x: [], y: [], fills: []};
  function drawPrice(f, full) {
    const names = Object.keys(f.prices || {});
    const sel = $("symbol");
    if (names.length && (symbol === null || !names.includes(symbol))) symbol = names[0];
    if (full) { priceState.x = []; priceState.y = []; priceState.fills = []; }
    const existing = Array.from(sel.options).map((o) => o.value);
    for (const n of names) if (!existing.includes(n)) sel.add(new Option(n, n));
    sel.value = symbol || "";
    if (symbol !== null && f.prices[symbol]) {
      priceState.x.push(...f.series.clock_ns.map(t));
      priceState.y.push(...f.prices[symbol]);
      const extra = priceState.x.length - MAX_BROWSER_POINTS;
      if (extra > 0) { priceState.x.splice(0, extra); priceState.y.splice(0, extra); }
    }
    priceState.fills.push(...(f.fills || []));
    if (priceState.fills.length > 2000) priceState.fills.splice(0, priceState.fills.length - 2000);
    const mine = priceState.fills.filter((x) => x[1] === symbol);
    const buys = mine.filter((x) => x[2] === "BUY"), sells = mine.filter((x) => x[2] === "SELL");
    Plotly.react("price", [
      {x: priceState.x, y: priceState.y, name: symbol || "price", mode: "lines",
       line: {color: "#57606a", width: 1.2}},
      {x: buys.map((x) => t(x[0])), y: buys.map((x) => x[4]), name: "buys", mode: "markers",
       marker: {symbol: "triangle-up", size: 9, color: "#1a7f37"}},
      {x: sells.map((x) => t(x[0])), y: sells.map((x) => x[4]), name: "sells",
       mode: "markers", marker: {symbol: "triangle-down", size: 9, color: "#d1242f"}},
    ], layout(`Price with fills${symbol ? " · " + symbol : ""}`, {height: 280}), config);
  }

  function extend(f) {
    const s = f.series;
    if (!s.wall_ns.length) return;
    const clock = s.clock_ns.map(t), wall = s.wall_ns.map(t);
    Plotly.extendTraces("equity", {x: [clock, clock], y: [s.equity, drawdowns(s.equity)]},
      [0, 1], MAX_BROWSER_POINTS);
    Plotly.extendTraces("latency", {x: [wall, wall], y: [s.p50_us, s.p99_us]}, [0, 1],
      MAX_BROWSER_POINTS);
    Plotly.extendTraces("throughput", {x: [wall, wall], y: [s.bars_s, s.decisions_s]}, [0, 1],
      MAX_BROWSER_POINTS);
    Plotly.extendTraces("resources", {x: [wall, wall], y: [s.cpu_pct, s.rss_mb]}, [0, 1],
      MAX_BROWSER_POINTS);
    drawPrice(f, false);
    drawStages(f, false);
  }

  function table(id, head, rows) {
    const h = "<tr>" + head.map((c) => `<th>${esc(c)}</th>`).join("") + "</tr>";
    const b = rows.length ? rows.map((r) => "<tr>" + r.map((c) => `<td>${c}</td>`).join("")
      + "</tr>").join("") : `<tr><td colspan="${head.length}" class="none">none</td></tr>`;
    $(id).innerHTML = h + b;
  }

  function renderSnapshot(f) {
    const s = f.snapshot;
    if (!s) return;
    const state = $("state");
    state.textContent = s.trading_state + (s.state_reason ? ` · ${s.state_reason}` : "");
    state.className = "badge " + s.trading_state.toLowerCase();
    $("equity-now").textContent = num(s.equity);
    $("cash-now").textContent = num(s.cash);
    $("bars-now").textContent = Number(s.n_bars).toLocaleString();
    $("clock-now").textContent = s.clock_ns ? t(s.clock_ns).toISOString().replace(".000Z", "Z") : "–";
    $("rate-now").textContent = `${num(s.bars_per_s, 0)} bars/s · ${num(s.decisions_per_s, 0)} decisions/s`;
    const p = f.process || {};
    const gc = (s.gc_collections || []).join(" / ");
    $("proc-now").textContent = `CPU ${num(p.cpu_pct, 0)} % · RSS ${num(p.rss_mb, 0)} MB · GC collections ${gc || "–"}`;
    const lat = s.decision_latency_us;
    $("lat-now").textContent = lat ? `p50 ${num(lat.p50, 1)} · p99 ${num(lat.p99, 1)} · max ${num(lat.max, 1)} µs` : "not measured in this window";
    table("positions", ["symbol", "qty", "avg price", "last", "unrealised", "realised"],
      s.positions.map((x) => [esc(x.symbol), num(x.quantity, 4), num(x.avg_price), num(x.last_price),
        num(x.unrealized_pnl), num(x.realized_pnl)]));
    table("orders", ["order", "symbol", "side", "remaining", "limit"],
      s.working_orders.map((o) => [esc(o[0]), esc(o[1]), esc(o[2]), num(o[3], 4), num(o[4])]));
    table("fills", ["time", "symbol", "side", "qty", "price"],
      (s.recent_fills || []).slice().reverse().map((x) => [esc(t(x[0]).toISOString()),
        esc(x[1]), esc(x[2]), num(x[3], 4), num(x[4])]));
    table("denials", ["reason", "count"],
      Object.entries(s.denials || {}).map(([k, v]) => [esc(k), Number(v).toLocaleString()]));
    const h = s.hardening || {};
    const rows = Object.entries(h.breakers || {}).map(([k, v]) => [esc(k),
      `<span class="badge ${v === "CLOSED" ? "active" : "halted"}">${esc(v)}</span>`]);
    rows.push(["degraded mode", esc(h.degraded ? "ON" : "off")],
      ["feed", esc(h.feed_stale ? "STALE" : "fresh")],
      ["disabled symbols", esc((s.disabled_symbols || []).join(", ") || "none")]);
    table("breakers", ["breaker", "state"], rows);
    table("headroom", ["window", "tokens left"],
      Object.entries(s.rate_limits || {}).map(([k, v]) => [esc(k),
        `<meter min="0" max="${v.limit}" value="${v.available}"></meter> ${num(v.available, 1)} / ${num(v.limit, 0)}`]));
    table("stage-table", ["stage", "p50", "p90", "p99", "bars"],
      Object.entries(s.stages || {}).map(([k, v]) => [esc(k), num(v.p50), num(v.p90), num(v.p99),
        esc(v.n === undefined ? (v.message || "") : v.n)]));
    table("limits", ["limit", "value"],
      Object.entries(s.limits || {}).map(([k, v]) => [esc(k), v === null ? "off" : num(v, 4)]));
    const lim = $("limit-name");
    if (!lim.options.length) for (const k of Object.keys(s.limits || {})) lim.add(new Option(k, k));
  }

  function renderAlerts(f) {
    const list = $("alerts");
    if (f.full) list.innerHTML = "";
    for (const a of f.alerts || []) {
      const li = document.createElement("li");
      li.className = a.kind;
      li.textContent = `${t(a.wall_ns).toLocaleTimeString()} · ${a.kind} · ${a.text}`;
      list.prepend(li);
    }
    while (list.children.length > 300) list.removeChild(list.lastChild);
  }

  function connection(text, cls) {
    const c = $("connection");
    c.textContent = text;
    c.className = "badge " + cls;
  }

  const source = new EventSource(`/api/live/${encodeURIComponent(key)}/stream`);
  source.onmessage = (ev) => {
    const f = JSON.parse(ev.data);
    if (f.full) fullDraw(f); else extend(f);
    renderSnapshot(f);
    renderAlerts(f);
    frames += 1;
    root.dataset.frames = String(frames);
    if (f.snapshot) root.dataset.seq = String(f.snapshot.seq);
    if (f.error) connection(`session not answering: ${f.error}`, "reducing");
    else connection(f.ended ? "session ended" : "live", f.ended ? "halted" : "active");
  };
  source.addEventListener("end", () => {
    source.close();
    connection("session ended: this page shows its last state", "halted");
    root.dataset.ended = "1";
  });
  source.onerror = () => {
    if (root.dataset.ended !== "1") connection("connection lost: retrying…", "reducing");
  };
  $("symbol").addEventListener("change", (ev) => {
    symbol = ev.target.value;
    fetch(`/api/live/${encodeURIComponent(key)}/frame`).then((r) => r.json()).then((f) => drawPrice(f, true));
  });

  // --- controls: every command goes to the session's control API, as `ultrathink ctl` does
  async function send(payload) {
    const operator = $("operator").value.trim();
    const out = $("result");
    if (!operator) { out.textContent = "error: your name is required (it goes to the audit trail)"; out.className = "result bad"; return; }
    payload.operator = operator;
    const reason = $("reason").value.trim();
    if (reason && !payload.reason) payload.reason = reason;
    out.textContent = `${payload.action}: sending…`;
    const r = await fetch(`/api/live/${encodeURIComponent(key)}/command`, {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(payload),
    });
    const body = await r.json().catch(() => ({error: `HTTP ${r.status}`}));
    if (!r.ok) { out.textContent = `error: ${body.error || r.status}`; out.className = "result bad"; return; }
    const before = body.before || {}, after = body.after || {};
    const keys = Array.from(new Set([...Object.keys(before), ...Object.keys(after)]));
    const changed = keys.filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k]))
      .map((k) => `${k}: ${JSON.stringify(before[k])} → ${JSON.stringify(after[k])}`);
    out.textContent = `${body.action}: ${changed.join("; ") || "no change"}${body.message ? " (" + body.message + ")" : ""}`;
    out.className = "result ok";
  }
  const sym = () => $("cmd-symbol").value.trim();
  $("kill").addEventListener("click", () => { $("kill-confirm").hidden = false; $("kill").hidden = true; });
  $("kill-cancel").addEventListener("click", () => { $("kill-confirm").hidden = true; $("kill").hidden = false; });
  $("kill-yes").addEventListener("click", () => {
    $("kill-confirm").hidden = true; $("kill").hidden = false;
    send({action: "halt", flatten: $("kill-flatten").checked});
  });
  $("resume").addEventListener("click", () => send({action: "resume", reason: $("reason").value.trim()}));
  $("reduce").addEventListener("click", () => send({action: "reduce"}));
  $("flatten-all").addEventListener("click", () => send({action: "flatten", symbol: null}));
  $("flatten-one").addEventListener("click", () => send({action: "flatten", symbol: sym()}));
  $("disable").addEventListener("click", () => send({action: "disable_symbol", symbol: sym()}));
  $("enable").addEventListener("click", () => send({action: "enable_symbol", symbol: sym()}));
  $("set-limit").addEventListener("click", () => {
    const raw = $("limit-value").value.trim();
    const value = ["", "off", "none"].includes(raw.toLowerCase()) ? null : Number(raw);
    send({action: "set_limit", limit: $("limit-name").value, value: Number.isNaN(value) ? raw : value});
  });
})();
