// Bastion dashboard: polls the admin API and draws everything itself (no libraries, no network but this origin).
"use strict";
(function () {
  const TOKEN_KEY = "bastion-admin-token";
  const POLL_MS = 1500;
  const MAX_SAMPLES = 600;
  const root = document.documentElement;
  const $ = (id) => document.getElementById(id);
  const state = { samples: [], lastT: 0, rangeMin: 5, stats: null, scriptError: null, askingToken: false, timer: null };

  // The headless test reads data-ok: "true" once a refresh has rendered and no script error happened.
  window.addEventListener("error", (e) => scriptFailed(e.message || String(e)));
  window.addEventListener("unhandledrejection", (e) => scriptFailed((e.reason && e.reason.message) || String(e.reason)));

  function scriptFailed(msg) {
    state.scriptError = msg;
    root.dataset.ok = "false";
    root.dataset.error = msg;
    showBanner("Dashboard script error: " + msg);
  }

  function showBanner(text) {
    const b = $("banner");
    b.textContent = text;
    b.hidden = false;
  }

  function hideBanner() { $("banner").hidden = true; }

  // ---------- formatting ----------
  const nf = new Intl.NumberFormat("en-US");
  function fmtNum(n) { return nf.format(Math.round(n)); }
  function fmtBytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? Math.round(n) : n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)) + " " + units[i];
  }
  function fmtRate(n) { return fmtBytes(n) + "/s"; }
  function fmtPerSec(n) { return (n < 10 ? n.toFixed(1) : fmtNum(n)) + "/s"; }
  function fmtAge(s) {
    s = Math.floor(s);
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + String(s % 60).padStart(2, "0") + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + String(Math.floor(s / 60) % 60).padStart(2, "0") + "m";
    return Math.floor(s / 86400) + "d " + Math.floor(s / 3600) % 24 + "h";
  }
  function fmtClock(ms, seconds) {
    const d = new Date(ms);
    const p = (x) => String(x).padStart(2, "0");
    return p(d.getHours()) + ":" + p(d.getMinutes()) + (seconds ? ":" + p(d.getSeconds()) : "");
  }

  // Builds DOM nodes; text always goes through textContent (request lines and user names come from clients).
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    if (attrs) for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v; else el.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  // ---------- API ----------
  class Unauthorized extends Error {}

  async function api(path) {
    const headers = { "Accept": "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers["Authorization"] = "Bearer " + token;
    const r = await fetch(path, { headers, cache: "no-store" });
    if (r.status === 401) throw new Unauthorized(token ? "token refused" : "token needed");
    if (!r.ok) throw new Error(path + ": HTTP " + r.status);
    return r.json();
  }

  function askToken(refused) {
    if (state.askingToken) return;
    state.askingToken = true;
    const dlg = $("token-dialog");
    $("token-error").hidden = !refused;
    $("token-input").value = "";
    if (typeof dlg.showModal === "function") dlg.showModal(); else dlg.setAttribute("open", "");
  }

  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const dlg = $("token-dialog");
    if (typeof dlg.close === "function") dlg.close(); else dlg.removeAttribute("open");
    const v = $("token-input").value.trim();
    if (v) sessionStorage.setItem(TOKEN_KEY, v);
    state.askingToken = false;
    $("signout").hidden = false;
    refresh();
  });

  $("signout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("signout").hidden = true;
    refresh();
  });

  $("range").addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (!b) return;
    state.rangeMin = Number(b.dataset.min);
    for (const x of $("range").querySelectorAll("button")) x.classList.toggle("on", x === b);
    drawCharts();
  });

  // ---------- refresh loop ----------
  async function refresh() {
    clearTimeout(state.timer);
    try {
      const [stats, conns, denials] = await Promise.all([
        api("api/stats?since=" + state.lastT),
        api("api/connections?limit=200"),
        api("api/denials?limit=50"),
      ]);
      mergeSamples(stats.traffic.samples);
      state.stats = stats;
      renderHeader(stats);
      renderKpis(stats);
      renderListeners(stats.listeners);
      renderConnections(conns);
      renderDenials(denials.denials);
      renderRules(stats.rules);
      drawCharts();
      $("live").classList.add("on");
      if (!state.scriptError) {
        hideBanner();
        root.dataset.ok = "true";
      }
      $("signout").hidden = !sessionStorage.getItem(TOKEN_KEY);
    } catch (e) {
      $("live").classList.remove("on");
      if (e instanceof Unauthorized) {
        root.dataset.ok = "auth";
        showBanner("The admin API needs a token.");
        askToken(e.message === "token refused");
      } else {
        if (!state.scriptError) root.dataset.ok = "false";
        showBanner("Cannot reach the gateway's admin API (" + e.message + "); retrying…");
      }
    }
    state.timer = setTimeout(refresh, POLL_MS);
  }

  function mergeSamples(samples) {
    for (const s of samples) {
      if (s[0] <= state.lastT) continue;
      state.samples.push(s);
      state.lastT = s[0];
    }
    if (state.samples.length > MAX_SAMPLES) state.samples.splice(0, state.samples.length - MAX_SAMPLES);
  }

  // ---------- rendering ----------
  function renderHeader(s) {
    $("version").textContent = "v" + s.version;
    const down = s.listeners.filter((l) => l.state === "down").map((l) => l.name);
    const pill = $("health");
    if (s.draining) { pill.textContent = "Draining"; pill.className = "pill warn"; }
    else if (down.length) { pill.textContent = "Degraded: " + down.join(", ") + " down"; pill.className = "pill bad"; }
    else { pill.textContent = "Healthy"; pill.className = "pill ok"; }
    setMeta("uptime", "up ", fmtAge(s.uptime_s));
    setMeta("generation", "config generation ", String(s.generation));
    const r = s.reload;
    const el = $("reload");
    if (!r.count) { el.textContent = "no reloads yet"; el.title = ""; }
    else {
      el.textContent = "";
      el.append("last reload ", h("b", null, r.ok ? "ok" : "refused"), " at " + fmtClock(Date.parse(r.last_at), true) + " (" + r.count + " total)");
      el.title = r.last_error || "";
    }
    document.title = (down.length ? "⚠ " : "") + "Bastion — gateway dashboard";
  }

  function setMeta(id, label, value) {
    const el = $(id);
    el.textContent = "";
    el.append(label, h("b", null, value));
  }

  function recent(col, n) {
    const tail = state.samples.slice(-n);
    if (!tail.length) return 0;
    return tail.reduce((a, s) => a + s[col], 0) / tail.length;
  }

  function renderKpis(s) {
    const t = s.totals;
    $("k-active").textContent = fmtNum(t.active);
    $("k-accepted").textContent = fmtNum(t.accepted) + " accepted since start";
    $("k-allow").textContent = fmtNum(t.allow);
    $("k-allow-rate").textContent = fmtPerSec(recent(3, 5)) + " now";
    $("k-deny").textContent = fmtNum(t.deny);
    const total = t.allow + t.deny;
    $("k-deny-rate").textContent = fmtPerSec(recent(4, 5)) + " now" + (total ? " · " + (100 * t.deny / total).toFixed(1) + "% of decisions" : "");
    $("k-in").textContent = fmtBytes(t.bytes_in);
    $("k-in-rate").textContent = fmtRate(recent(1, 5)) + " now";
    $("k-out").textContent = fmtBytes(t.bytes_out);
    $("k-out-rate").textContent = fmtRate(recent(2, 5)) + " now";
  }

  function fill(tbodyParent, rows, cols, emptyText) {
    const tbody = tbodyParent.querySelector("tbody");
    const body = document.createElement("tbody");
    if (!rows.length) body.append(h("tr", null, h("td", { class: "empty", colspan: String(cols) }, emptyText)));
    for (const r of rows) body.append(r);
    tbody.replaceWith(body);
  }

  function renderListeners(list) {
    const up = list.filter((l) => l.state === "up").length;
    $("listener-count").textContent = list.length + " configured · " + up + " up";
    fill($("listeners"), list.map((l) => h("tr", { "data-listener": l.name },
      h("td", null, h("b", null, l.name)),
      h("td", null, h("span", { class: "tag" }, l.type || ""), l.tls ? h("div", { class: "muted tls-tunnels" },
        "TLS: " + fmtNum(l.tls.inspected) + " inspected · " + fmtNum(l.tls.spliced) + " spliced" +
        (l.tls.refused + l.tls.client_refused ? " · " + fmtNum(l.tls.refused + l.tls.client_refused) + " refused" : "")) : null),
      h("td", { class: "mono" }, l.bound || l.listen || "—"),
      h("td", null, h("span", { class: "state " + l.state }, l.state)),
      h("td", null, l.policy || h("span", { class: "muted" }, "none (deny)")),
      h("td", { class: "num" }, fmtNum(l.active)),
      h("td", { class: "num" }, fmtNum(l.accepted)),
      h("td", { class: "num" }, fmtNum(l.allow)),
      h("td", { class: "num" }, fmtNum(l.deny)),
      h("td", { class: "num" }, fmtBytes(l.bytes_in)),
      h("td", { class: "num" }, fmtBytes(l.bytes_out)),
    )), 11, "No listeners configured.");
  }

  function renderConnections(c) {
    $("conn-count").textContent = c.count + " open" + (c.count > c.connections.length ? " · showing oldest " + c.connections.length : "");
    fill($("connections"), c.connections.map((x) => h("tr", null,
      h("td", { class: "mono nowrap" }, x.id),
      h("td", { class: "nowrap" }, x.listener),
      h("td", { class: "mono nowrap" }, x.client),
      h("td", { class: "nowrap" }, x.user || h("span", { class: "muted" }, "—")),
      h("td", { class: "mono clip", title: x.target || "" }, x.target || h("span", { class: "muted" }, "—")),
      h("td", { class: "num" }, fmtAge(x.age_s)),
      h("td", { class: "num" }, fmtBytes(x.bytes_in)),
      h("td", { class: "num" }, fmtBytes(x.bytes_out)),
    )), 8, "No open connections.");
  }

  function renderDenials(list) {
    $("denial-count").textContent = list.length ? "latest " + list.length : "";
    fill($("denials"), list.map((d) => h("tr", null,
      h("td", { class: "mono", title: d.ts }, fmtClock(Date.parse(d.ts), true)),
      h("td", { class: "nowrap" }, d.listener),
      h("td", { class: "mono nowrap" }, d.client || ""),
      h("td", { class: "mono clip", title: d.request || "" }, d.request || ""),
      h("td", { class: "nowrap" }, h("span", { class: "rule" }, d.rule || "default")),
      h("td", null, d.reason || ""),
    )), 6, "No denials yet.");
  }

  function renderRules(rules) {
    const box = $("rules");
    box.textContent = "";
    if (!rules.length) { box.append(h("div", { class: "muted" }, "No decisions yet.")); return; }
    const max = Math.max(...rules.map((r) => r.count));
    for (const r of rules.slice(0, 10)) {
      const bar = h("i", { class: r.verdict === "allow" ? "allow" : "deny" });
      bar.style.width = Math.max(1, (100 * r.count) / max) + "%";
      box.append(h("div", { class: "row" },
        h("span", null, h("span", { class: "state " + (r.verdict === "allow" ? "up" : "down") }, r.verdict), " ", h("b", null, r.rule || "(default)")),
        h("div", { class: "bar" }, bar),
        h("span", { class: "num" }, fmtNum(r.count))));
    }
  }

  // ---------- charts (inline SVG) ----------
  const SVG = "http://www.w3.org/2000/svg";
  function s(tag, attrs) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
    return el;
  }

  function niceMax(v) {
    if (v <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function niceBytesMax(v) {
    if (v <= 0) return 1024;
    let unit = 1;
    while (v / unit >= 1024) unit *= 1024;
    return niceMax(v / unit) * unit;
  }

  function bucket(samples, ms) {
    if (ms <= 1000) return samples;
    const out = [];
    let cur = null, n = 0;
    for (const x of samples) {
      const key = Math.floor(x[0] / ms) * ms + ms;
      if (!cur || cur[0] !== key) {
        if (cur) out.push(cur.map((v, i) => (i === 0 ? v : v / n)));
        cur = [key, 0, 0, 0, 0, 0];
        n = 0;
      }
      for (let i = 1; i < 6; i++) cur[i] += x[i];
      n++;
    }
    if (cur) out.push(cur.map((v, i) => (i === 0 ? Math.min(v, samples[samples.length - 1][0]) : v / n)));
    return out;
  }

  function drawChart(el, series, yFmt, bytes) {
    const w = el.clientWidth || 600, hgt = el.clientHeight || 220;
    const m = { l: 64, r: 12, t: 10, b: 24 };
    const svg = s("svg", { viewBox: `0 0 ${w} ${hgt}`, role: "img" });
    const end = state.samples.length ? state.samples[state.samples.length - 1][0] : Date.now();
    const start = end - state.rangeMin * 60000;
    // Per-second samples are noisy over minutes: average them into buckets of about 1/120 of what is shown
    // (3 s over 5 minutes of data, 5 s over 10), and keep every sample while there are only a few.
    const inRange = state.samples.filter((x) => x[0] >= start);
    const spanS = inRange.length ? (end - inRange[0][0]) / 1000 : 0;
    const pts = bucket(inRange, Math.max(1, Math.round(spanS / 120)) * 1000);
    let max = 0;
    for (const x of pts) for (const se of series) max = Math.max(max, x[se.col]);
    max = bytes ? niceBytesMax(max) : niceMax(Math.max(max, 1));
    const X = (t) => m.l + ((t - start) / (end - start)) * (w - m.l - m.r);
    const Y = (v) => m.t + (1 - v / max) * (hgt - m.t - m.b);

    for (let i = 0; i <= 4; i++) {
      const v = (max * i) / 4, y = Y(v);
      svg.append(s("line", { x1: m.l, x2: w - m.r, y1: y, y2: y, class: "gridline" }));
      const label = s("text", { x: m.l - 8, y: y + 4, "text-anchor": "end", class: "axis" });
      label.textContent = yFmt(v);
      svg.append(label);
    }
    const stepMs = state.rangeMin <= 1 ? 15000 : state.rangeMin <= 5 ? 60000 : 120000;
    for (let t = Math.ceil(start / stepMs) * stepMs; t <= end; t += stepMs) {
      const x = X(t);
      svg.append(s("line", { x1: x, x2: x, y1: m.t, y2: hgt - m.b, class: "gridline" }));
      const label = s("text", { x, y: hgt - 6, "text-anchor": "middle", class: "axis" });
      label.textContent = fmtClock(t, state.rangeMin <= 1);
      svg.append(label);
    }
    if (pts.length < 2) {
      const t = s("text", { x: (w + m.l) / 2, y: hgt / 2, "text-anchor": "middle", class: "empty" });
      t.textContent = "collecting samples…";
      svg.append(t);
    } else {
      for (const se of series) {
        const line = pts.map((x, i) => (i ? "L" : "M") + X(x[0]).toFixed(1) + "," + Y(x[se.col]).toFixed(1)).join("");
        const area = line + "L" + X(pts[pts.length - 1][0]).toFixed(1) + "," + Y(0) + "L" + X(pts[0][0]).toFixed(1) + "," + Y(0) + "Z";
        svg.append(s("path", { d: area, fill: se.color, "fill-opacity": "0.12", stroke: "none" }));
        svg.append(s("path", { d: line, fill: "none", stroke: se.color, "stroke-width": "1.8", "stroke-linejoin": "round" }));
      }
    }
    el.replaceChildren(svg);
  }

  function css(name) { return getComputedStyle(root).getPropertyValue(name).trim(); }

  function drawCharts() {
    drawChart($("chart-bytes"), [{ col: 1, color: css("--in") }, { col: 2, color: css("--out") }], fmtRate, true);
    drawChart($("chart-decisions"), [{ col: 3, color: css("--allow") }, { col: 4, color: css("--deny") }],
      (v) => (v >= 10 ? fmtNum(v) : String(+v.toFixed(2))) + "/s", false);
  }

  let resizeTimer = null;
  window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(drawCharts, 100); });

  refresh();
})();
