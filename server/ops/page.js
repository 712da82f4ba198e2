// The live jobs page: reads the server-sent events of <base>/stream with fetch() (so it can send
// the bearer token, which EventSource cannot) and draws each view. A job's row (or the address
// #job/<id>) opens its panel: <base>/job/<id>, its step timeline, fetched again while the job is
// in flight. Everything shown is set as text (textContent), never parsed as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "mcp-jobs.jobs-page.token";
  const STALE_AFTER_MS = 40000; // the server sends something at least every 15 s
  const streamUrl = document.body.dataset.stream;
  const jobUrl = document.body.dataset.job;
  const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
  const DETAIL_EVERY_MS = 1000; // the most often an open job in flight is read again
  const $ = (id) => document.getElementById(id);

  let controller = null;
  let retryTimer = null;
  let retryDelay = 500;
  let clockOffset = 0; // server clock minus this browser's, in seconds
  let lastChangeAt = 0;
  let lastByteAt = 0;
  let live = false;
  let view = null;
  let drawn = false; // whether the jobs in flight were drawn once (later arrivals are highlighted)
  let openJob = null; // the id of the job whose panel is open
  let detail = null; // what its panel shows (the last answer of <base>/job/<id>)
  let detailTimer = null;
  let detailLoading = false;
  let detailLoadedAt = 0;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function setStatus(state, text) {
    const pill = $("status");
    pill.dataset.state = state;
    pill.textContent = text;
  }

  function number(value) {
    return Number.isInteger(value) ? String(value) : String(Math.round(value * 1000) / 1000);
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
    seconds = Math.max(seconds, 0);
    if (seconds < 10) return seconds.toFixed(1) + " s";
    if (seconds < 60) return Math.floor(seconds) + " s";
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min " + String(Math.floor(seconds % 60)).padStart(2, "0") + " s";
    const hours = Math.floor(minutes / 60);
    if (hours < 24) return hours + " h " + String(minutes % 60).padStart(2, "0") + " min";
    return Math.floor(hours / 24) + " d " + (hours % 24) + " h";
  }

  function span(seconds) {
    if (seconds % 3600 === 0) return seconds === 3600 ? "hour" : seconds / 3600 + " hours";
    if (seconds % 60 === 0) return seconds === 60 ? "minute" : seconds / 60 + " minutes";
    return seconds + " s";
  }

  const serverNow = () => Date.now() / 1000 + clockOffset;

  function authHeaders(accept) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = { Accept: accept };
    if (token) headers.Authorization = "Bearer " + token;
    return headers;
  }

  // ---- the stream ----

  async function connect() {
    clearTimeout(retryTimer);
    if (controller) controller.abort();
    const mine = new AbortController();
    controller = mine;
    live = false;
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = authHeaders("text/event-stream");
    setStatus("connecting", view ? "reconnecting…" : "connecting…");
    let response;
    try {
      response = await fetch(streamUrl, { headers, cache: "no-store", credentials: "omit", signal: mine.signal });
    } catch (error) {
      if (mine.signal.aborted) return;
      return retry();
    }
    if (response.status === 401 || response.status === 403) {
      let description = "";
      try {
        description = (await response.json()).error_description || "";
      } catch (error) {
        // no JSON body: the status says enough
      }
      if (response.status === 401) description = token ? "That token was not accepted." : "";
      return askForToken(description);
    }
    if (!response.ok || !response.body) return retry();
    retryDelay = 500;
    $("forget").hidden = !token;
    $("login").hidden = true;
    $("content").hidden = false;
    if (openJob && !detail) loadDetail(); // asked for before the token was given
    try {
      await read(response.body, mine.signal);
    } catch (error) {
      if (mine.signal.aborted) return;
    }
    if (!mine.signal.aborted) retry(); // the server ends a stream now and then: pick it up again
  }

  async function read(body, signal) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    signal.addEventListener("abort", () => reader.cancel().catch(() => {}));
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      lastByteAt = Date.now();
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = block
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, ""))
          .join("\n");
        if (data) receive(JSON.parse(data));
      }
    }
  }

  function retry() {
    live = false;
    setStatus("connecting", "reconnecting…");
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 10000);
  }

  function receive(data) {
    if (typeof data.now === "number") clockOffset = data.now - Date.now() / 1000;
    lastChangeAt = Date.now();
    if (data.error) {
      live = false;
      setStatus("error", data.error);
      return;
    }
    live = true;
    setStatus("live", "live");
    view = data;
    draw(data);
    refreshDetail();
  }

  // ---- the token ----

  function askForToken(message) {
    live = false;
    view = null;
    setStatus("locked", "token needed");
    $("content").hidden = true;
    $("whoami").hidden = true;
    $("forget").hidden = true;
    $("summary").textContent = "";
    $("updated").textContent = "";
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("token").focus();
  }

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("token").value = "";
    $("login").hidden = true;
    connect();
  });

  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    closeJob();
    drawn = false;
    for (const id of ["inflight", "failures", "queues"]) $(id).tBodies[0].replaceChildren();
    connect();
  });

  // ---- drawing ----

  function draw(data) {
    const counts = data.counts || {};
    const who = $("whoami");
    who.hidden = !data.caller;
    who.textContent = data.caller ? "signed in as " + data.caller : "";
    const summary = $("summary");
    summary.replaceChildren(
      el("b", null, counts.running || 0), " running · ",
      el("b", null, counts.input_required || 0), " waiting for an answer · ",
      el("b", null, counts.queued || 0), " queued · ",
      el("b", null, counts.failed || 0), " failed and ",
      el("b", null, counts.succeeded || 0), " succeeded in the last " + span(data.recent_failures_for) + " · ",
      el("b", null, data.workers_alive || 0), data.workers_alive === 1 ? " worker alive" : " workers alive",
    );
    drawInFlight(data);
    drawFailures(data);
    drawQueues(data);
    const notes = [];
    if (data.in_flight_total > data.in_flight.length) {
      notes.push("Showing " + data.in_flight.length + " of " + data.in_flight_total + " jobs in flight.");
    }
    if (data.failures_total > data.failures.length) {
      notes.push("Showing " + data.failures.length + " of " + data.failures_total + " failures.");
    }
    if (!data.complete) notes.push("Stopped reading after " + data.scanned + " jobs: some may be missing.");
    $("notes").hidden = notes.length === 0;
    $("notes").textContent = notes.join(" ");
    tick();
  }

  function drawInFlight(data) {
    const body = $("inflight").tBodies[0];
    const rows = new Map([...body.rows].map((row) => [row.dataset.jobId, row]));
    const wanted = data.in_flight.map((job) => {
      let row = rows.get(job.job_id);
      if (!row) {
        row = jobRow(job);
        if (drawn) row.classList.add("new");
      }
      updateJobRow(row, job);
      return row;
    });
    body.replaceChildren(...wanted);
    drawn = true;
    $("inflight-empty").hidden = wanted.length > 0;
    $("inflight").hidden = wanted.length === 0;
    $("inflight-count").textContent = data.in_flight_total ? String(data.in_flight_total) : "";
  }

  function jobRow(job) {
    const row = el("tr");
    row.dataset.jobId = job.job_id;
    const tool = el("td");
    tool.append(jobLink(job), el("span", "id", job.job_id.slice(0, 8)));
    tool.title = "job " + job.job_id;
    const bar = el("div", "bar");
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-valuemin", "0");
    bar.append(el("div", "fill"));
    const line = el("div", "line");
    line.append(el("span", "amount"), el("span", "msg"), el("span", "log"));
    const progress = el("td", "progress");
    progress.append(bar, line);
    row.append(tool, el("td", "state"), progress, el("td", "num time age"), el("td", "num time wait opt"));
    return row;
  }

  // The tool's name links to the job's panel: focusable, opened with Enter as with a click.
  function jobLink(job) {
    const link = el("a", "tool");
    link.href = "#job/" + job.job_id;
    link.setAttribute("aria-label", "show the steps of " + job.tool + " job " + job.job_id);
    return link;
  }

  function updateJobRow(row, job) {
    row.job = job;
    row.classList.toggle("open", job.job_id === openJob);
    const [tool, state, progress] = row.cells;
    tool.firstChild.textContent = job.tool;
    const badges = [];
    if (job.state === "running" && job.heartbeat === false) {
      badges.push(el("span", "badge lost", "no heartbeat"));
    } else {
      badges.push(el("span", "badge " + job.state, job.state));
    }
    if (job.attempt > 1) badges.push(el("span", "badge attempt", "attempt " + job.attempt));
    state.replaceChildren(...badges);

    const bar = progress.querySelector(".bar");
    const fill = bar.firstChild;
    const amount = progress.querySelector(".amount");
    const message = progress.querySelector(".msg");
    bar.classList.toggle("queued", job.state === "queued");
    bar.classList.toggle("indeterminate", job.state === "running" && job.fraction === null);
    if (job.fraction !== null) {
      const percent = Math.round(job.fraction * 100);
      fill.style.width = (job.fraction * 100).toFixed(2) + "%";
      bar.setAttribute("aria-valuemax", String(job.total));
      bar.setAttribute("aria-valuenow", String(job.progress));
      bar.setAttribute("aria-valuetext", percent + "%");
      amount.textContent = number(job.progress) + "/" + number(job.total) + " · " + percent + "%";
    } else {
      fill.style.width = "";
      bar.removeAttribute("aria-valuemax");
      if (job.progress !== null) bar.setAttribute("aria-valuenow", String(job.progress));
      else bar.removeAttribute("aria-valuenow");
      bar.setAttribute("aria-valuetext", job.state === "queued" ? "waiting for a worker" : "running");
      amount.textContent = job.progress !== null ? number(job.progress) : job.state === "queued" ? "waiting" : "";
    }
    const text = job.state === "queued" ? job.status : job.message || "";
    message.textContent = text;
    message.title = text;
    const log = progress.querySelector(".log");
    log.textContent = job.last_log || "";
    log.title = job.last_log ? "the job's last log line" : "";
  }

  function drawFailures(data) {
    const body = $("failures").tBodies[0];
    body.replaceChildren(
      ...data.failures.map((job) => {
        const row = el("tr");
        row.dataset.jobId = job.job_id;
        row.job = job;
        const tool = el("td");
        const link = jobLink(job);
        link.textContent = job.tool;
        tool.append(link, el("span", "id", job.job_id.slice(0, 8)));
        tool.title = "job " + job.job_id;
        const error = el("td", "error");
        if (job.error_type) error.append(el("span", "type", job.error_type));
        error.append(job.error || "(no message)");
        row.append(tool, el("td", "num time failed"), error);
        return row;
      }),
    );
    $("failures-empty").hidden = data.failures.length > 0;
    $("failures-empty").textContent = "No failures in the last " + span(data.recent_failures_for) + ".";
    for (const row of body.rows) row.classList.toggle("open", row.dataset.jobId === openJob);
    $("failures").hidden = data.failures.length === 0;
    $("failures-count").textContent = data.failures_total ? String(data.failures_total) : "";
  }

  function drawQueues(data) {
    $("queues").tBodies[0].replaceChildren(
      ...data.queues.map((queue) => {
        const row = el("tr");
        row.dataset.queue = queue.name;
        const workers = el("td", "num" + (queue.workers ? "" : " zero"), queue.workers);
        if (!queue.workers) workers.title = "no live worker consumes this queue";
        row.append(el("td", "tool", queue.name), el("td", "num", queue.depth === null ? "?" : queue.depth), workers);
        return row;
      }),
    );
  }

  // ---- one job's panel ----

  function jobOfAddress() {
    const match = /^#job\/(.*)$/.exec(location.hash);
    return match && JOB_ID.test(match[1]) ? match[1] : null;
  }

  function openJobOf(row) {
    const id = row && row.dataset.jobId;
    if (!id || !JOB_ID.test(id)) return;
    if (location.hash !== "#job/" + id) history.pushState(null, "", "#job/" + id);
    showJob(id);
    $("detail-title").focus();
  }

  for (const id of ["inflight", "failures"]) {
    $(id).tBodies[0].addEventListener("click", (event) => {
      if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return; // a new tab
      event.preventDefault();
      openJobOf(event.target.closest("tr"));
    });
  }

  function syncWithAddress() {
    const id = jobOfAddress();
    if (id !== openJob) showJob(id);
  }
  window.addEventListener("hashchange", syncWithAddress);
  window.addEventListener("popstate", syncWithAddress);

  function closeJob() {
    if (location.hash) history.pushState(null, "", location.pathname + location.search);
    const row = openJob && document.querySelector('tr[data-job-id="' + openJob + '"] a.tool');
    showJob(null);
    if (row) row.focus();
  }

  $("detail-close").addEventListener("click", closeJob);
  $("detail").addEventListener("keydown", (event) => {
    if (event.key === "Escape") closeJob();
  });

  function showJob(id) {
    clearTimeout(detailTimer);
    openJob = id;
    detail = null;
    for (const row of document.querySelectorAll("tr[data-job-id]")) {
      row.classList.toggle("open", row.dataset.jobId === id);
    }
    $("detail").hidden = !id;
    if (!id) return;
    $("detail-tool").textContent = "Job";
    $("detail-id").textContent = id;
    $("detail-facts").replaceChildren();
    $("steps").tBodies[0].replaceChildren();
    $("steps").hidden = true;
    $("steps-empty").hidden = true;
    $("steps-note").hidden = true;
    detailMessage("Loading…");
    loadDetail();
  }

  function detailMessage(text) {
    $("detail-error").hidden = !text;
    $("detail-error").textContent = text || "";
  }

  async function loadDetail() {
    const id = openJob;
    if (!id || detailLoading) return;
    detailLoading = true;
    detailLoadedAt = Date.now();
    let response = null;
    let data = null;
    try {
      response = await fetch(jobUrl + encodeURIComponent(id), {
        headers: authHeaders("application/json"),
        cache: "no-store",
        credentials: "omit",
      });
      if (response.ok) data = await response.json();
    } catch (error) {
      response = null;
    } finally {
      detailLoading = false;
    }
    if (id !== openJob) return loadDetail(); // another job was opened meanwhile
    if (data) {
      detail = data;
      detailMessage("");
      drawDetail(data);
      return;
    }
    if (response && response.status === 404) {
      detail = null;
      $("detail-facts").replaceChildren();
      $("steps").hidden = true;
      $("steps-note").hidden = true;
      return detailMessage("No such job: it is unknown, it has expired, or it is not yours.");
    }
    if (response && (response.status === 401 || response.status === 403)) {
      return detailMessage("A token that may see this job is needed.");
    }
    detailMessage("Cannot read this job right now; retrying.");
    clearTimeout(detailTimer);
    detailTimer = setTimeout(loadDetail, 2000);
  }

  // A new view of the stream: an open job still in flight is read again (at most once a second).
  function refreshDetail() {
    if (!openJob || !detail || detail.ended_at !== null) return;
    clearTimeout(detailTimer);
    detailTimer = setTimeout(loadDetail, Math.max(0, DETAIL_EVERY_MS - (Date.now() - detailLoadedAt)));
  }

  function fact(name, value) {
    const dd = el("dd");
    dd.append(value);
    return [el("dt", null, name), dd];
  }

  function traceLink(data) {
    if (!data.trace_id) return "—";
    const code = el("span", "mono", data.trace_id);
    if (!data.trace_link || !/^https?:\/\//.test(data.trace_link)) return code;
    const link = el("a");
    link.href = data.trace_link;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    link.append(code);
    return link;
  }

  function drawDetail(data) {
    const job = data.job;
    $("detail-tool").textContent = job.tool;
    $("detail-id").textContent = job.job_id;
    const state = el("span", "badge " + job.state, job.state);
    const created = job.created_at ? new Date(job.created_at * 1000).toLocaleString() : "—";
    const facts = [
      fact("State", state),
      fact("Caller", job.caller || "(anonymous)"),
      fact("Attempt", String(job.attempt)),
      fact("Created", el("span", "created", created)),
      fact("Queue wait", duration(data.queue_wait)),
      fact("Run time", el("span", "run-time")),
      fact("Trace", traceLink(data)),
    ];
    if (job.error) facts.push(fact("Error", el("span", "error", (job.error_type ? job.error_type + ": " : "") + job.error)));
    else if (job.status) facts.push(fact("Status", job.status));
    $("detail-facts").replaceChildren(...facts.flat());

    $("steps").tBodies[0].replaceChildren(
      ...data.steps.map((step) => {
        const row = el("tr");
        row.dataset.step = String(step.number);
        row.step = step;
        if (step.slowest) row.classList.add("slowest");
        const mark = el("td", "mark");
        row.append(
          el("td", "num", step.number),
          el("td", "step", step.message),
          el("td", "num time", "+" + duration(step.offset)),
          el("td", "num time took"),
          mark,
        );
        return row;
      }),
    );
    $("steps").hidden = data.steps.length === 0;
    $("steps-empty").hidden = data.steps.length > 0;
    $("steps-note").hidden = data.steps_total <= data.steps_shown;
    $("steps-note").textContent = "Showing the last " + data.steps_shown + " of " + data.steps_total + " steps.";
    tickDetail();
  }

  // A job in flight: its run time and its last step's "so far" move with the clock.
  function tickDetail() {
    if (!detail) return;
    const now = serverNow();
    const running = detail.ended_at === null;
    const runTime = $("detail-facts").querySelector(".run-time");
    if (runTime) {
      const seconds = running && detail.started_at ? now - detail.started_at : detail.run_time;
      runTime.textContent = duration(seconds) + (running && detail.started_at ? " so far" : "");
    }
    const created = $("detail-facts").querySelector(".created");
    if (created && detail.job.created_at) {
      created.title = duration(now - detail.job.created_at) + " ago";
    }
    for (const row of $("steps").tBodies[0].rows) {
      const step = row.step;
      const going = step.duration === null;
      row.cells[3].textContent = going ? duration(now - step.at) + " so far" : duration(step.duration);
      const marks = [];
      if (step.slowest) marks.push("⚠ slowest");
      if (going) marks.push("still going");
      row.cells[4].textContent = marks.join(", ");
      row.cells[4].classList.toggle("going", going && !step.slowest);
    }
  }

  // Ages and "ago" move with the clock between events.
  function tick() {
    tickDetail();
    const now = serverNow();
    for (const row of $("inflight").tBodies[0].rows) {
      const job = row.job;
      row.cells[3].textContent = job.created_at ? duration(now - job.created_at) : "—";
      const wait = job.state === "queued" && job.created_at ? now - job.created_at : job.queue_wait;
      row.cells[4].textContent = duration(wait);
    }
    for (const row of $("failures").tBodies[0].rows) {
      const job = row.job;
      row.cells[1].textContent = job.updated_at ? duration(now - job.updated_at) + " ago" : "—";
    }
    if (live) {
      $("updated").textContent = "Live. Last change " + duration((Date.now() - lastChangeAt) / 1000) + " ago.";
      if (Date.now() - lastByteAt > STALE_AFTER_MS) {
        controller.abort(); // a silent stream: a proxy or the network dropped it
        retry();
      }
    }
  }

  setInterval(tick, 1000);
  syncWithAddress();
  connect();
})();
