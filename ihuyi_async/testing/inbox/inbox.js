// The emulator's live inbox: one fetch of /api/state per change event, tables rebuilt from it.
"use strict";

const $ = (selector) => document.querySelector(selector);
const seenMessages = new Set();
let fetching = false;
let dirty = false;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
  }
  return node;
}

function clock(iso) {
  return iso ? iso.slice(11, 19) : "";
}

function fill(table, rows) {
  const body = $(table + " tbody");
  body.replaceChildren(...rows);
}

function renderMessages(messages, total) {
  $("#message-count").textContent = total;
  $("#messages-empty").hidden = messages.length > 0;
  const rows = messages.slice().reverse().map((m) => {
    const fresh = !seenMessages.has(m.smsid);
    seenMessages.add(m.smsid);
    return el("tr", { class: fresh ? "new" : "", "data-smsid": m.smsid },
      el("td", { class: "mono" }, clock(m.time)),
      el("td", { class: "mono mobile" }, m.mobile),
      el("td", { class: "content" }, m.content),
      el("td", { class: "code" }, m.code ? el("b", {}, m.code) : ""),
      el("td", {}, String(m.segments)),
      el("td", { class: "mono" }, m.smsid));
  });
  fill("#messages", rows);
}

function renderNumbers(numbers) {
  fill("#numbers", numbers.map((n) => el("tr", {},
    el("td", { class: "mono" }, n.mobile + (n.blacklisted ? " (blacklisted)" : "")),
    el("td", { class: n.per_day !== null && n.sent_today >= n.per_day ? "full" : "" },
      `${n.sent_today} / ${n.per_day ?? "∞"}`),
    el("td", { class: n.codes_per_day !== null && n.codes_today >= n.codes_per_day ? "full" : "" },
      `${n.codes_today} / ${n.codes_per_day ?? "∞"}`),
    el("td", { class: "mono" }, n.next_allowed_at ? clock(n.next_allowed_at) : "now"))));
}

function renderRequests(requests, total) {
  $("#request-count").textContent = total;
  fill("#requests", requests.slice().reverse().map((r) => {
    const refused = r.code !== 2 || (r.status !== null && r.status !== 200);
    return el("tr", { class: refused ? "refused" : "" },
      el("td", { class: "mono" }, clock(r.time)),
      el("td", {}, `${r.http_method} ${r.method ?? r.path}`),
      el("td", { class: "mono" }, r.mobile ?? ""),
      el("td", { class: "code-cell" }, r.code === null ? "—" : String(r.code)),
      el("td", {}, r.status === null ? "dropped" : String(r.status)),
      el("td", {}, r.fault ?? ""),
      el("td", { class: "mono" }, r.charset));
  }));
}

async function post(path, body, method = "POST") {
  const response = await fetch(path, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function renderTemplates(templates) {
  fill("#templates", templates.map((t) => {
    const actions = el("td", {});
    if (t.status === "pending") {
      const approve = el("button", { type: "button", class: "approve", "data-id": String(t.template_id) }, "Approve");
      approve.addEventListener("click", () => post(`/api/templates/${t.template_id}/approve`));
      const reject = el("button", { type: "button", class: "reject", "data-id": String(t.template_id) }, "Reject");
      reject.addEventListener("click", () => post(`/api/templates/${t.template_id}/reject`, { reason: "rejected in the inbox" }));
      actions.append(approve, " ", reject);
    }
    return el("tr", { "data-template": String(t.template_id) },
      el("td", { class: "mono" }, String(t.template_id)),
      el("td", { class: "content" }, t.content),
      el("td", {}, el("span", { class: `badge ${t.status}` }, t.status)),
      actions);
  }));
}

function renderPushes(pushes, total, pending) {
  $("#push-count").textContent = total + (pending ? ` (+${pending} queued)` : "");
  fill("#pushes", pushes.slice().reverse().map((p) => el("tr", { class: p.delivered ? "" : "refused" },
    el("td", {}, p.kind),
    el("td", { class: "mono" }, p.url),
    el("td", { class: "mono" }, Object.entries(p.form).map(([k, v]) => `${k}=${v}`).join(" ")),
    el("td", {}, String(p.attempts)),
    el("td", {}, p.outcomes.join(", ")))));
}

function renderFaults(faults) {
  $("#faults").replaceChildren(...faults.map((f) => {
    const remove = el("button", { type: "button", class: "secondary" }, "remove");
    remove.addEventListener("click", () => post(`/api/faults/${f.index}`, undefined, "DELETE"));
    const what = f.kind + (f.status ? ` ${f.status}` : "") + (f.seconds ? ` ${f.seconds}s` : "");
    return el("li", {}, el("span", {}, `${what} · ${f.method ?? "any method"} · ` +
      `${f.remaining === null ? "always" : f.remaining + " left"} · fired ${f.fired}`), remove);
  }));
}

function render(state) {
  $("#accounts").textContent = state.accounts.map((a) => `${a.account}: ${a.balance} left`).join(" · ");
  renderMessages(state.messages, state.totals.messages);
  renderNumbers(state.numbers);
  renderRequests(state.requests, state.totals.requests);
  renderTemplates(state.templates);
  renderPushes(state.pushes, state.totals.pushes, state.pending_pushes);
  renderFaults(state.faults);
  document.body.dataset.version = String(Number(document.body.dataset.version || 0) + 1);
}

async function refresh() {
  if (fetching) { dirty = true; return; }
  fetching = true;
  try {
    do {
      dirty = false;
      const response = await fetch("/api/state?last=300", { cache: "no-store" });
      render(await response.json());
    } while (dirty);
  } finally {
    fetching = false;
  }
}

function connect() {
  const status = $("#status");
  const events = new EventSource("/api/events");
  events.addEventListener("open", () => {
    status.textContent = "live";
    status.className = "status live";
    status.dataset.state = "live";
  });
  events.addEventListener("change", () => { refresh(); });
  events.addEventListener("error", () => {
    status.textContent = "reconnecting…";
    status.className = "status offline";
    status.dataset.state = "offline";
  });
}

$("#reply-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const note = $("#reply-note");
  try {
    const push = await post("/api/reply", { mobile: form.get("mobile"), content: form.get("content") });
    note.textContent = push.delivered ? "pushed" : `not acknowledged: ${push.outcomes.join(", ")}`;
  } catch (error) {
    note.textContent = error.message;
  }
});

$("#fault-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const kind = form.get("kind");
  await post("/api/faults", {
    kind, method: form.get("method") || null, times: form.get("times") || null,
    status: kind === "http_error" ? 502 : undefined, seconds: kind === "latency" ? 2 : undefined,
  });
});

$("#reset").addEventListener("click", () => post("/api/reset"));

refresh();
connect();
