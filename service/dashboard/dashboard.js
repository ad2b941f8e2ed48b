// The opentune dashboard: one page over the public /v1 API (no build step, no dependencies).
//
// Rules this file keeps:
// - The API key lives in sessionStorage only (this tab, until it closes): never a cookie, never
//   localStorage. It is sent as a bearer header to this server's /v1 and nowhere else.
// - API text (suffixes, file names, error messages) reaches the page only as text nodes or
//   attribute values: nothing here parses HTML, so no API value can become markup.
"use strict";

(() => {
  const KEY_NAME = "opentune.apiKey";
  // Relative to the page (/dashboard/), so a gateway behind a path prefix works too.
  const API_BASE = new URL("../v1/", window.location.href);
  const ACTIVE = new Set(["validating_files", "queued", "running"]);
  const STATUSES = new Set(["validating_files", "queued", "running", "paused", "succeeded", "failed", "cancelled"]);
  const JOB_POLL_MS = 2000;
  const LIST_POLL_MS = 5000;
  const PAGE = 20;
  const EVENTS_SHOWN = 300;
  const SVG_NS = "http://www.w3.org/2000/svg";

  const $ = (id) => document.getElementById(id);

  // ---- The API ----------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  const apiKey = () => window.sessionStorage.getItem(KEY_NAME);

  async function api(path, { method = "GET", query = {} } = {}) {
    const url = new URL(path, API_BASE);
    for (const [name, value] of Object.entries(query)) {
      if (value !== undefined && value !== null) url.searchParams.set(name, String(value));
    }
    let response;
    try {
      response = await fetch(url, {
        method,
        headers: { Authorization: `Bearer ${apiKey()}`, Accept: "application/json" },
        credentials: "omit",
        cache: "no-store",
      });
    } catch (err) {
      throw new ApiError(0, `Could not reach the server: ${err.message}`);
    }
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const message = body && body.error && typeof body.error.message === "string"
        ? body.error.message
        : `The server answered ${response.status} ${response.statusText}`;
      throw new ApiError(response.status, message);
    }
    return body;
  }

  const jobPath = (id, rest = "") => `fine_tuning/jobs/${encodeURIComponent(id)}${rest}`;

  // ---- Small DOM helpers ------------------------------------------------------------------

  // Children are appended as nodes or text nodes (never parsed): safe for any API value.
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (name === "class") node.className = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  function svg(tag, attrs = {}, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const pad = (n) => String(n).padStart(2, "0");

  function formatTime(seconds) {
    if (!seconds) return "—";
    const d = new Date(seconds * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function formatEta(job) {
    if (!ACTIVE.has(job.status) || !job.estimated_finish) return "—";
    const left = job.estimated_finish - Date.now() / 1000;
    if (left < 5) return "any moment";
    if (left < 90) return `in ${Math.round(left)} s`;
    if (left < 5400) return `in ${Math.round(left / 60)} min`;
    return `in ${(left / 3600).toFixed(1)} h`;
  }

  function formatBytes(bytes) {
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`;
    return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  }

  const formatLoss = (value) => (typeof value === "number" ? value.toFixed(4) : "—");

  function statusBadge(status) {
    const badge = el("span", { class: "status" }, status);
    if (STATUSES.has(status)) badge.classList.add(`status-${status}`);
    return badge;
  }

  function progressCell(job, metrics) {
    if (job.status === "succeeded") {
      return el("span", { class: "progress-cell" }, el("progress", { max: "1", value: "1" }), " done");
    }
    if (!metrics) return "—";
    const bar = el("progress", { max: String(Math.max(metrics.total_steps, 1)), value: String(metrics.step) });
    return el("span", { class: "progress-cell" }, bar, ` ${metrics.step} / ${metrics.total_steps}`);
  }

  function fillTable(table, rows) {
    table.tBodies[0].replaceChildren(...rows);
  }

  const row = (...cells) => el("tr", {}, ...cells.map((cell) => el("td", {}, cell)));

  // ---- Errors, session, views -------------------------------------------------------------

  let errorSource = null;

  function showError(message, source = "action") {
    $("error-text").textContent = message;
    $("error").hidden = false;
    errorSource = source;
  }

  function clearError(source) {
    if (source === undefined || source === errorSource) {
      $("error").hidden = true;
      errorSource = null;
    }
  }

  function handleError(err, source) {
    if (err instanceof ApiError && err.status === 401) {
      logOut();
      showError(`${err.message} Log in again with a valid key.`, "login");
      return;
    }
    showError(err.message, source);
  }

  function showView(name) {
    for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== `${name}-view`;
    const loggedIn = name !== "login";
    $("nav").hidden = !loggedIn;
    $("logout").hidden = !loggedIn;
    for (const link of $("nav").querySelectorAll("a")) {
      link.classList.toggle("current", link.dataset.view === name || (name === "job" && link.dataset.view === "jobs"));
    }
  }

  function logOut() {
    window.sessionStorage.removeItem(KEY_NAME);
    stopPolling();
    showView("login");
    $("api-key").focus();
  }

  async function logIn(event) {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) return;
    window.sessionStorage.setItem(KEY_NAME, key);
    $("login-button").disabled = true;
    try {
      await api("fine_tuning/jobs", { query: { limit: 1 } }); // proves the key before showing anything
      $("api-key").value = "";
      clearError();
      route();
    } catch (err) {
      window.sessionStorage.removeItem(KEY_NAME);
      $("api-key").value = "";
      showError(err.message, "login");
    } finally {
      $("login-button").disabled = false;
    }
  }

  // ---- Polling: one chain at a time; navigating starts a new generation and drops the old ----

  let generation = 0;
  let timer = null;

  function stopPolling() {
    generation += 1;
    window.clearTimeout(timer);
  }

  function schedule(poll, delay, gen) {
    window.clearTimeout(timer);
    timer = window.setTimeout(() => {
      if (gen === generation) poll(gen);
    }, delay);
  }

  // ---- Jobs -------------------------------------------------------------------------------

  const jobsList = { jobs: [], hasMore: false };

  // The newest metrics event among a job's latest events: its step, total steps and losses.
  async function latestMetrics(job) {
    if (job.status !== "running" && job.status !== "paused") return null;
    const page = await api(jobPath(job.id, "/events"), { query: { limit: 20 } });
    const found = page.data.find((e) => e.type === "metrics" && e.data);
    return found ? found.data : null;
  }

  async function loadJobs(gen, more = false) {
    try {
      const after = more && jobsList.jobs.length ? jobsList.jobs[jobsList.jobs.length - 1].id : undefined;
      const limit = more ? PAGE : Math.min(Math.max(jobsList.jobs.length, PAGE), 1000);
      const page = await api("fine_tuning/jobs", { query: { limit, after } });
      const metrics = await Promise.all(page.data.map((job) => latestMetrics(job).catch(() => null)));
      if (gen !== generation) return;
      const rows = page.data.map((job, i) => ({ job, metrics: metrics[i] }));
      jobsList.jobs = more ? jobsList.jobs.concat(rows.map((r) => r.job)) : rows.map((r) => r.job);
      jobsList.hasMore = page.has_more;
      renderJobs(rows, more);
      clearError("poll");
    } catch (err) {
      if (gen === generation) handleError(err, "poll");
    }
    if (gen === generation && jobsList.jobs.some((job) => ACTIVE.has(job.status) || job.status === "paused")) {
      schedule(loadJobs, LIST_POLL_MS, gen);
    }
  }

  function renderJobs(rows, appended) {
    const tbody = $("jobs-table").tBodies[0];
    const built = rows.map(({ job, metrics }) => {
      const link = el("a", { href: `#/jobs/${encodeURIComponent(job.id)}` }, job.id);
      const tr = row(link, job.model, job.user_provided_suffix || "—", statusBadge(job.status),
        progressCell(job, metrics), formatEta(job), formatTime(job.created_at));
      tr.dataset.jobId = job.id;
      return tr;
    });
    if (appended) tbody.append(...built);
    else tbody.replaceChildren(...built);
    $("jobs-empty").hidden = jobsList.jobs.length > 0;
    $("jobs-more").hidden = !jobsList.hasMore;
  }

  // ---- One job ----------------------------------------------------------------------------

  let current = null; // { id, job, events (newest first), known (event ids), checkpoints }

  // Events newer than the ones already held (the API lists newest first; `after` pages back).
  async function newEvents(state) {
    const fresh = [];
    let after;
    for (;;) {
      const limit = state.known.size ? 100 : 1000;
      const page = await api(jobPath(state.id, "/events"), { query: { limit, after } });
      for (const event of page.data) {
        if (state.known.has(event.id)) return fresh;
        fresh.push(event);
      }
      if (!page.has_more || page.data.length === 0) return fresh;
      after = page.data[page.data.length - 1].id;
    }
  }

  async function refreshJob(gen) {
    const state = current;
    try {
      const [job, fresh, checkpoints] = await Promise.all([
        api(jobPath(state.id)),
        newEvents(state),
        api(jobPath(state.id, "/checkpoints"), { query: { limit: 100 } }),
      ]);
      if (gen !== generation) return;
      state.job = job;
      for (const event of fresh) state.known.add(event.id);
      state.events = fresh.concat(state.events);
      state.checkpoints = checkpoints.data;
      renderJob(state);
      clearError("poll");
    } catch (err) {
      if (gen !== generation) return;
      handleError(err, "poll");
      if (err instanceof ApiError && err.status === 404) return; // no such job: nothing to poll
    }
    if (gen === generation && (!state.job || ACTIVE.has(state.job.status))) schedule(refreshJob, JOB_POLL_MS, gen);
  }

  function openJob(id) {
    showView("job");
    current = { id, job: null, events: [], known: new Set(), checkpoints: [] };
    $("job-title").textContent = id;
    $("job-status").replaceChildren();
    $("job-details").replaceChildren();
    $("loss-chart").replaceChildren();
    $("loss-legend").replaceChildren();
    fillTable($("checkpoints-table"), []);
    fillTable($("events-table"), []);
    for (const name of ["pause", "resume", "cancel"]) $(`job-${name}`).disabled = true;
    refreshJob(generation);
  }

  // Metrics by step, oldest first; a step reported twice (a resumed trainer) keeps its latest values.
  function metricsByStep(events) {
    const byStep = new Map();
    for (let i = events.length - 1; i >= 0; i -= 1) {
      const event = events[i];
      if (event.type === "metrics" && event.data && typeof event.data.step === "number") {
        byStep.set(event.data.step, event.data);
      }
    }
    return [...byStep.values()].sort((a, b) => a.step - b.step);
  }

  function renderJob(state) {
    const { job } = state;
    $("job-title").textContent = job.user_provided_suffix ? `${job.id} (${job.user_provided_suffix})` : job.id;
    $("job-status").replaceWith(Object.assign(statusBadge(job.status), { id: "job-status" }));
    $("job-pause").disabled = job.status !== "running";
    $("job-resume").disabled = job.status !== "paused";
    $("job-cancel").disabled = !(ACTIVE.has(job.status) || job.status === "paused");

    const metrics = metricsByStep(state.events);
    const last = metrics[metrics.length - 1];
    const total = last ? last.total_steps : 0;
    $("job-progress").max = Math.max(total, 1);
    $("job-progress").value = job.status === "succeeded" ? Math.max(total, 1) : last ? last.step : 0;
    const eta = formatEta(job);
    $("job-progress-text").textContent = last
      ? `Step ${last.step} of ${total}${eta === "—" ? "" : `, finishes ${eta}`}`
      : ACTIVE.has(job.status) ? "Waiting for the first step…" : "";

    drawLossChart($("loss-chart"), $("loss-legend"), metrics, total);
    renderDetails(job, last);
    fillTable($("checkpoints-table"), state.checkpoints.map((c) => row(String(c.step_number),
      c.fine_tuned_model_checkpoint, formatLoss(c.metrics.train_loss), formatLoss(c.metrics.valid_loss),
      formatTime(c.created_at))));
    $("checkpoints-empty").hidden = state.checkpoints.length > 0;
    const shown = state.events.slice(0, EVENTS_SHOWN);
    fillTable($("events-table"), shown.map((e) => {
      const tr = row(formatTime(e.created_at), e.level, e.message);
      tr.className = `level-${e.level === "warn" || e.level === "error" ? e.level : "info"}`;
      return tr;
    }));
    $("events-note").hidden = state.events.length <= EVENTS_SHOWN;
    $("events-note").textContent = `The newest ${EVENTS_SHOWN} of ${state.events.length} events.`;
  }

  function renderDetails(job, last) {
    const hp = job.hyperparameters || {};
    const entries = [
      ["Model", job.model],
      ["Fine-tuned model", job.fine_tuned_model || "—"],
      ["Method", job.method ? job.method.type : "supervised"],
      ["Epochs / batch / LR ×", `${hp.n_epochs} / ${hp.batch_size} / ${hp.learning_rate_multiplier}`],
      ["Training file", job.training_file],
      ["Validation file", job.validation_file || "—"],
      ["Result files", job.result_files && job.result_files.length ? job.result_files.join(", ") : "—"],
      ["Training loss", formatLoss(last && last.train_loss)],
      ["Tokens / s", last && typeof last.tokens_per_second === "number" ? last.tokens_per_second.toFixed(0) : "—"],
      ["Trained tokens", job.trained_tokens === null || job.trained_tokens === undefined ? "—" : String(job.trained_tokens)],
      ["Created", formatTime(job.created_at)],
      ["Finished", formatTime(job.finished_at)],
      ["ETA", formatEta(job)],
    ];
    if (job.error) entries.push(["Error", `${job.error.code}: ${job.error.message}`]);
    for (const [name, value] of Object.entries(job.metadata || {})) entries.push([`metadata.${name}`, value]);
    $("job-details").replaceChildren(...entries.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, value)]));
  }

  async function act(action) {
    const state = current;
    if (!state || !state.job) return;
    if (action === "cancel" && !window.confirm(`Cancel ${state.id}? A cancelled job cannot be resumed.`)) return;
    for (const name of ["pause", "resume", "cancel"]) $(`job-${name}`).disabled = true;
    clearError();
    stopPolling();
    const gen = generation;
    try {
      state.job = await api(jobPath(state.id, `/${action}`), { method: "POST" });
      if (gen === generation) renderJob(state);
    } catch (err) {
      if (gen === generation) handleError(err, "action");
    }
    if (gen === generation) refreshJob(gen);
  }

  // ---- The loss chart: inline SVG --------------------------------------------------------

  // About `count` round tick values covering [low, high].
  function ticks(low, high, count) {
    const span = high - low || 1;
    const raw = span / count;
    const magnitude = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => span / s <= count) || magnitude * 10;
    const found = [];
    for (let v = Math.ceil(low / step) * step; v <= high + step * 1e-9; v += step) found.push(Number(v.toPrecision(12)));
    return found;
  }

  function drawLossChart(container, legend, metrics, totalSteps) {
    const train = metrics.filter((m) => typeof m.train_loss === "number").map((m) => [m.step, m.train_loss]);
    const valid = metrics.filter((m) => typeof m.valid_loss === "number").map((m) => [m.step, m.valid_loss]);
    if (train.length === 0 && valid.length === 0) {
      container.replaceChildren(el("p", { class: "muted" }, "The curve appears when training reports its first step."));
      legend.replaceChildren();
      return;
    }
    const width = 640;
    const height = 260;
    const m = { left: 56, right: 16, top: 12, bottom: 34 };
    const values = [...train, ...valid].map(([, v]) => v);
    let low = Math.min(...values);
    let high = Math.max(...values);
    const margin = (high - low) * 0.08 || Math.abs(high) * 0.1 || 1;
    low = Math.max(0, low - margin);
    high += margin;
    const maxStep = Math.max(totalSteps, ...metrics.map((p) => p.step), 1);
    const x = (step) => m.left + (step / maxStep) * (width - m.left - m.right);
    const y = (v) => m.top + (1 - (v - low) / (high - low)) * (height - m.top - m.bottom);

    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "Loss by step" });
    for (const v of ticks(low, high, 5)) {
      chart.append(svg("line", { x1: m.left, x2: width - m.right, y1: y(v), y2: y(v), class: "grid" }));
      chart.append(svg("text", { x: m.left - 6, y: y(v) + 4, "text-anchor": "end", class: "tick" }, String(v)));
    }
    for (const s of ticks(0, maxStep, 6).filter((t) => Number.isInteger(t))) {
      chart.append(svg("line", { x1: x(s), x2: x(s), y1: height - m.bottom, y2: height - m.bottom + 4, class: "axis" }));
      chart.append(svg("text", { x: x(s), y: height - m.bottom + 16, "text-anchor": "middle", class: "tick" }, String(s)));
    }
    chart.append(svg("line", { x1: m.left, x2: width - m.right, y1: height - m.bottom, y2: height - m.bottom, class: "axis" }));
    chart.append(svg("text", { x: (m.left + width - m.right) / 2, y: height - 2, "text-anchor": "middle", class: "tick" }, "step"));

    const line = (points, cls) => svg("polyline", {
      class: cls,
      points: points.map(([s, v]) => `${x(s).toFixed(1)},${y(v).toFixed(1)}`).join(" "),
      "data-points": points.length,
    });
    chart.append(line(train, "line-train"));
    if (valid.length) {
      chart.append(line(valid, "line-valid"));
      for (const [s, v] of valid) chart.append(svg("circle", { cx: x(s), cy: y(v), r: 3, class: "dot-valid" }));
    }
    container.replaceChildren(chart);

    const key = (cls, name, points) => el("span", { class: "key" }, el("span", { class: `swatch ${cls}` }),
      `${name}: ${formatLoss(points.length ? points[points.length - 1][1] : null)} (${points.length} points)`);
    legend.replaceChildren(key("swatch-train", "training loss", train),
      ...(valid.length ? [key("swatch-valid", "validation loss", valid)] : []));
  }

  // ---- Files and models ------------------------------------------------------------------

  const filesList = { files: [], hasMore: false };

  async function loadFiles(gen, more = false) {
    try {
      const after = more && filesList.files.length ? filesList.files[filesList.files.length - 1].id : undefined;
      const page = await api("files", { query: { limit: 100, after } });
      if (gen !== generation) return;
      filesList.files = more ? filesList.files.concat(page.data) : page.data;
      filesList.hasMore = page.has_more;
      fillTable($("files-table"), filesList.files.map((f) => row(f.id, f.filename, f.purpose, formatBytes(f.bytes),
        f.status_details ? `${f.status}: ${f.status_details}` : f.status, formatTime(f.created_at))));
      $("files-empty").hidden = filesList.files.length > 0;
      $("files-more").hidden = !filesList.hasMore;
    } catch (err) {
      if (gen === generation) handleError(err, "poll");
    }
  }

  async function loadModels(gen) {
    try {
      const list = await api("models");
      if (gen !== generation) return;
      fillTable($("models-table"), list.data.map((model) => row(model.id, model.owned_by, formatTime(model.created))));
    } catch (err) {
      if (gen === generation) handleError(err, "poll");
    }
  }

  // ---- Navigation: #/jobs, #/jobs/<id>, #/files, #/models ----------------------------------

  function route() {
    stopPolling();
    if (errorSource !== "login") clearError();
    if (!apiKey()) {
      showView("login");
      $("api-key").focus();
      return;
    }
    const [view, id] = (window.location.hash || "#/jobs").replace(/^#\/?/, "").split("/");
    if (view === "jobs" && id) openJob(decodeURIComponent(id));
    else if (view === "files") {
      showView("files");
      loadFiles(generation);
    } else if (view === "models") {
      showView("models");
      loadModels(generation);
    } else {
      showView("jobs");
      loadJobs(generation);
    }
  }

  function start() {
    $("login-form").addEventListener("submit", logIn);
    $("logout").addEventListener("click", () => {
      clearError();
      logOut();
    });
    $("error-close").addEventListener("click", () => clearError());
    $("jobs-more").addEventListener("click", () => loadJobs(generation, true));
    $("files-more").addEventListener("click", () => loadFiles(generation, true));
    for (const action of ["pause", "resume", "cancel"]) $(`job-${action}`).addEventListener("click", () => act(action));
    window.addEventListener("hashchange", route);
    route();
  }

  start();
})();
