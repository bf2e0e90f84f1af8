// The live web view: pick a case, ask, watch the agent work. Uses legalstream.js.
// Every URL is relative to the page (document.baseURI): the app may be mounted under a prefix.
import { LegalAgentWebSocket, RunError, ConnectionLostError, ApiError, UNVERIFIED_CODES } from "./legalstream.js";

const $ = (id) => document.getElementById(id);
const els = {
  conn: $("conn"),
  connText: $("conn-text"),
  banner: $("banner"),
  bannerText: $("banner-text"),
  bannerRetry: $("banner-retry"),
  form: $("ask-form"),
  caseSelect: $("case"),
  question: $("question"),
  ask: $("ask-button"),
  cancel: $("cancel-button"),
  thinking: $("thinking"),
  alert: $("alert"),
  alertText: $("alert-text"),
  alertRetry: $("alert-retry"),
  answer: $("answer"),
  unverified: $("unverified"),
  runState: $("run-state"),
  runMeta: $("run-meta"),
  citations: $("citations"),
  citationCount: $("citation-count"),
  citationsEmpty: $("citations-empty"),
  timeline: $("timeline"),
  timelineEmpty: $("timeline-empty"),
  newCase: $("new-case-button"),
  newCaseDialog: $("new-case-dialog"),
  newCaseForm: $("new-case-form"),
  newCaseName: $("new-case-name"),
  newCaseCancel: $("new-case-cancel"),
  documentsCard: $("documents-card"),
  documentsState: $("documents-state"),
  documentCount: $("document-count"),
  dropzone: $("dropzone"),
  pickFiles: $("pick-files"),
  fileInput: $("file-input"),
  documentsAlert: $("documents-alert"),
  documentsAlertText: $("documents-alert-text"),
  uploads: $("uploads"),
  documents: $("documents"),
  documentsEmpty: $("documents-empty"),
  reader: $("reader"),
  readerTitle: $("reader-title"),
  readerWhere: $("reader-where"),
  readerBody: $("reader-body"),
  readerClose: $("reader-close"),
};

// A JWT for servers in auth mode "jwt" (set it once: sessionStorage["legalstream.token"] = "...").
const token = sessionStorage.getItem("legalstream.token") || null;
const client = new LegalAgentWebSocket(undefined, { token }); // ws(s)://<page base>ws/query
window.legalstream = client; // for the console and tests

let current = null; // the RunHandle being shown
let bannerTimer = null;

// ---------------------------------------------------------------- helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("data-") || k.startsWith("aria-") || k === "id" || k === "href" || k === "tabindex") {
      node.setAttribute(k, v);
    } else node[k] = v;
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function pretty(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

function ms(seconds) {
  if (!Number.isFinite(seconds)) return "";
  return seconds < 1 ? `${Math.round(seconds * 1000)} ms` : `${seconds.toFixed(2)} s`;
}

function clip(text, n) {
  text = String(text ?? "");
  return text.length > n ? `${text.slice(0, n)}…` : text;
}

/** Text to show as the answer from one LLM call's streamed text, or null (it is ReAct scaffolding). */
function answerPart(text) {
  const m = /Final Answer\s*:\s*/.exec(text);
  if (m) return text.slice(m.index + m[0].length);
  const t = text.trimStart();
  if (!t) return null;
  if (/^(Thought|Action)\b/.test(t) || /\bAction\s*\d*\s*:/.test(t)) return null;
  if ("Thought:".startsWith(t) || "Final Answer:".startsWith(t)) return null; // maybe still arriving
  return text; // a provider streaming the answer itself (native tool calling)
}

/** Render answer text with [n] markers linked to their citation. */
function renderAnswer(text, streaming) {
  els.answer.replaceChildren();
  const paragraphs = String(text).split(/\n{2,}/);
  for (const para of paragraphs) {
    const p = el("p");
    const re = /\[(\d+)\]/g;
    let last = 0;
    let m;
    while ((m = re.exec(para))) {
      p.append(para.slice(last, m.index));
      p.append(
        el("a", { class: "marker", href: `#cite-${m[1]}`, "aria-label": `source ${m[1]}`, text: `[${m[1]}]` }),
      );
      last = m.index + m[0].length;
    }
    p.append(para.slice(last));
    els.answer.append(p);
  }
  els.answer.classList.toggle("streaming", streaming);
}

// ---------------------------------------------------------------- connection state

const CONN_TEXT = {
  idle: "Not connected",
  connecting: "Connecting…",
  open: "Connected",
  reconnecting: "Reconnecting…",
  closed: "Disconnected",
};

function showBanner(text, kind = "warn", { retry = false, hideAfter = 0 } = {}) {
  clearTimeout(bannerTimer);
  els.banner.hidden = false;
  els.banner.dataset.kind = kind;
  els.bannerText.textContent = text;
  els.bannerRetry.hidden = !retry;
  if (hideAfter) bannerTimer = setTimeout(() => (els.banner.hidden = true), hideAfter);
}

client.on("status", (s) => {
  if (s.state !== "resumed") {
    els.conn.dataset.state = s.state;
    els.connText.textContent = CONN_TEXT[s.state] ?? s.state;
  }
  if (s.state === "reconnecting") {
    const live = current?.live ? " The answer will continue where it left off." : "";
    showBanner(`Connection lost — reconnecting (attempt ${s.attempt})…${live}`, "warn");
  } else if (s.state === "resumed") {
    const resumed = s.runs?.length ? " Resumed the running question." : "";
    showBanner(`Reconnected.${resumed}`, "ok", { hideAfter: 4000 });
  } else if (s.state === "closed" && s.error) {
    showBanner(`Disconnected: ${s.error}`, "error", { retry: true });
  } else if (s.state === "open" && els.banner.dataset.kind === "error") {
    els.banner.hidden = true;
  }
});

els.bannerRetry.addEventListener("click", () => {
  showBanner("Reconnecting…", "warn");
  client.connect().catch((err) => showBanner(`Still disconnected: ${err.message || err}`, "error", { retry: true }));
});

// ---------------------------------------------------------------- cases

/** "Case 1 · Storage dispute · 4 documents" */
function caseLabel(c) {
  const bits = [`Case ${c.case_id}`];
  if (c.title) bits.push(c.title);
  if (c.documents != null) bits.push(`${c.documents} document${c.documents === 1 ? "" : "s"}`);
  return bits.join(" · ");
}

/** Fill the case picker; keeps the selection (or selects `select`). */
async function loadCases(select = null) {
  const keep = select ?? els.caseSelect.value;
  let cases = [];
  try {
    cases = await client.listCases();
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
      showAlert("This server requires sign-in: set sessionStorage['legalstream.token'] to a JWT and reload.");
    } else {
      showAlert(`Could not load the list of cases: ${err.message || err}`);
    }
  }
  els.caseSelect.replaceChildren();
  if (!cases.length) {
    els.caseSelect.append(el("option", { value: "1", text: "Case 1" }), el("option", { value: "2", text: "Case 2" }));
  }
  for (const c of cases) els.caseSelect.append(el("option", { value: String(c.case_id), text: caseLabel(c) }));
  if (keep && [...els.caseSelect.options].some((o) => o.value === String(keep))) els.caseSelect.value = String(keep);
  caseFiles.show(Number.parseInt(els.caseSelect.value, 10));
}

els.caseSelect.addEventListener("change", () => caseFiles.show(Number.parseInt(els.caseSelect.value, 10)));

els.newCase.addEventListener("click", () => {
  els.newCaseName.value = "";
  els.newCaseDialog.showModal();
  els.newCaseName.focus();
});
els.newCaseCancel.addEventListener("click", () => els.newCaseDialog.close());
els.newCaseForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const title = els.newCaseName.value.trim();
  if (!title) {
    els.newCaseName.focus();
    return;
  }
  try {
    const created = await client.createCase(title);
    els.newCaseDialog.close();
    await loadCases(created.case_id);
  } catch (err) {
    els.newCaseDialog.close();
    showAlert(`Could not create the case: ${err.message || err}`);
  }
});

// ---------------------------------------------------------------- case files

function bytes(n) {
  if (!Number.isFinite(n)) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function when(unix) {
  if (!Number.isFinite(unix)) return "";
  return new Date(unix * 1000).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

const PHASES = { queued: "Queued", parsing: "Reading", embedding: "Embedding", indexing: "Indexing" };

/** The selected case's documents: live upload progress (SSE), the list, upload and delete. */
class CaseFiles {
  constructor() {
    this.caseId = null;
    this.watch = null;
    this.live = ""; // the stream's state: open | reconnecting | closed
    this.uploads = new Map(); // job_id + name -> row
  }

  show(caseId) {
    if (!Number.isInteger(caseId)) return;
    // The same case again: keep its stream unless the server refused it (a case made since).
    if (caseId === this.caseId && this.live !== "closed") return;
    this.caseId = caseId;
    this.live = "";
    this.watch?.close();
    this.uploads.clear();
    els.uploads.replaceChildren();
    els.documentsAlert.hidden = true;
    els.documentsCard.dataset.live = "";
    const watch = client.watchDocuments(caseId, (e) => this.onEvent(caseId, e), {
      onStatus: (s) => {
        if (this.watch !== watch) return;
        this.live = s.state;
        els.documentsCard.dataset.live = s.state;
        els.documentsState.textContent = s.state === "open" ? "" : s.state === "reconnecting" ? "Reconnecting…" : "";
      },
    });
    this.watch = watch;
    this.refresh();
  }

  async refresh() {
    const caseId = this.caseId;
    let docs;
    try {
      docs = await client.listDocuments(caseId);
    } catch (err) {
      if (caseId !== this.caseId) return;
      els.documents.replaceChildren();
      els.documentCount.textContent = "";
      els.documentsEmpty.hidden = false;
      els.documentsEmpty.textContent =
        err instanceof ApiError && err.code === "unknown_case"
          ? "This case has no documents yet: add some."
          : `Could not list the documents: ${err.message || err}`;
      return;
    }
    if (caseId !== this.caseId) return;
    this.render(docs);
  }

  render(docs) {
    els.documents.replaceChildren();
    els.documentCount.textContent = docs.length ? `(${docs.length})` : "";
    els.documentsEmpty.hidden = docs.length > 0;
    els.documentsEmpty.textContent = "No documents in this case yet: add some.";
    for (const d of docs) {
      const facts = [
        d.file_type ? d.file_type.toUpperCase() : null,
        d.pages != null ? `${d.pages} page${d.pages === 1 ? "" : "s"}` : null,
        `${d.chunks} chunk${d.chunks === 1 ? "" : "s"}`,
        bytes(d.size_bytes ?? NaN) || null,
        d.ingested_at ? `added ${when(d.ingested_at)}` : null,
      ].filter(Boolean);
      const remove = el("button", { type: "button", class: "link-button delete", text: "Delete", "aria-label": `Delete ${d.title}` });
      remove.addEventListener("click", () => this.remove(d));
      els.documents.append(
        el(
          "li",
          { class: "doc", "data-doc-id": d.doc_id },
          el("div", { class: "doc-title", text: d.title || d.doc_id }),
          el("div", { class: "doc-facts", text: facts.join(" · ") }),
          remove,
        ),
      );
    }
  }

  async remove(doc) {
    if (!confirm(`Delete “${doc.title || doc.doc_id}” from case ${doc.case_id}? Its passages will no longer be searched.`)) return;
    try {
      await client.deleteDocument(doc.case_id, doc.doc_id);
    } catch (err) {
      this.alert(`Could not delete ${doc.title || doc.doc_id}: ${err.message || err}`);
    }
    this.refresh();
    loadCases();
  }

  alert(text) {
    els.documentsAlert.hidden = false;
    els.documentsAlertText.textContent = text;
  }

  async upload(files) {
    files = [...files];
    const caseId = this.caseId;
    if (!files.length || !Number.isInteger(caseId)) return;
    els.documentsAlert.hidden = true;
    const pending = files.map((f) => this.row("", f.name, "Uploading…"));
    try {
      await this.watch?.ready; // progress events go to the stream: be listening first
      const reply = await client.uploadDocuments(caseId, files);
      pending.forEach((row, i) => {
        const name = reply.files?.[i]?.name ?? files[i].name;
        this.uploads.delete(`\u0000${files[i].name}`);
        const existing = this.uploads.get(`${reply.job_id}\u0000${name}`);
        if (existing) row.item.remove(); // its progress already arrived
        else {
          row.job = reply.job_id;
          this.uploads.set(`${reply.job_id}\u0000${name}`, row);
          if (row.phase === "uploading") this.set(row, { phase: "queued" });
        }
      });
    } catch (err) {
      const why = err instanceof ApiError ? `${err.message}${err.code ? ` (${err.code})` : ""}` : err.message || String(err);
      for (const row of pending) this.set(row, { phase: "failed", status: "failed", error: why });
    }
  }

  /** The progress row of one file of a job (made on first sight). */
  row(job, name, text = "Queued") {
    const key = `${job}\u0000${name}`;
    let row = this.uploads.get(key);
    if (row) return row;
    const bar = el("progress", { max: 1, value: 0, "aria-label": `Progress of ${name}` });
    const state = el("span", { class: "upload-state", text });
    const item = el("li", { class: "upload", "data-phase": "uploading", "data-name": name }, el("div", { class: "upload-name", text: name }), bar, state);
    els.uploads.prepend(item);
    row = { item, bar, state, phase: "uploading", job };
    this.uploads.set(key, row);
    return row;
  }

  set(row, p) {
    row.phase = p.phase;
    row.item.dataset.phase = p.phase;
    if (p.phase === "done" || p.phase === "failed") {
      const ok = p.phase === "done" && p.status !== "failed";
      row.item.dataset.phase = ok ? "done" : "failed";
      row.bar.max = 1;
      row.bar.value = ok ? 1 : 0;
      row.state.textContent = ok
        ? p.status === "skipped"
          ? "Unchanged: already in the case"
          : p.status === "missed"
            ? "Finished"
          : `Done: ${p.chunks_total ?? 0} chunks${p.status === "replaced" ? " (replaced the earlier version)" : ""}`
        : `Failed: ${p.error || "unknown reason"}`;
      return;
    }
    const total = p.chunks_total || 0;
    if (p.phase === "embedding" && total) {
      row.bar.max = total;
      row.bar.value = p.chunks_done || 0;
    } else row.bar.removeAttribute("value"); // indeterminate
    const bits = [PHASES[p.phase] ?? p.phase];
    if (total) bits.push(`${p.chunks_done || 0} of ${total} chunks`);
    if (Number.isFinite(p.eta_seconds) && p.phase === "embedding") bits.push(`about ${Math.ceil(p.eta_seconds)} s left`);
    row.state.textContent = bits.join(" · ");
  }

  onEvent(caseId, { type, data }) {
    if (caseId !== this.caseId) return;
    if (type === "document_progress") {
      const row = this.uploads.get(`${data.job_id}\u0000${data.name}`) ?? this.row(data.job_id, data.name);
      this.set(row, data);
    } else if (type === "documents_changed") {
      this.refresh();
      loadCases();
    } else if (type === "ingest_job_done") {
      // Rows that never saw their last event (the stream dropped): the job is over.
      for (const row of this.uploads.values()) {
        if (row.job === data.job_id && row.phase !== "done" && row.phase !== "failed") {
          // Its last progress event was missed: say only that it finished (the list tells the rest).
          this.set(row, { phase: "done", status: "missed" });
        }
      }
    }
  }
}

const caseFiles = new CaseFiles();

els.pickFiles.addEventListener("click", () => els.fileInput.click());
els.fileInput.addEventListener("change", () => {
  caseFiles.upload(els.fileInput.files);
  els.fileInput.value = "";
});
for (const type of ["dragenter", "dragover"]) {
  els.dropzone.addEventListener(type, (ev) => {
    ev.preventDefault();
    els.dropzone.classList.add("over");
  });
}
els.dropzone.addEventListener("dragleave", () => els.dropzone.classList.remove("over"));
els.dropzone.addEventListener("drop", (ev) => {
  ev.preventDefault();
  els.dropzone.classList.remove("over");
  if (ev.dataTransfer?.files?.length) caseFiles.upload(ev.dataTransfer.files);
});

// ---------------------------------------------------------------- citation reader

/** Open the cited document with [char_start, char_end) marked and scrolled into view. */
async function openReader(c) {
  const where = [c.section, c.page != null ? `page ${c.page}` : null].filter(Boolean).join(" · ");
  els.readerTitle.textContent = c.title || c.doc_id;
  els.readerWhere.textContent = where;
  els.readerBody.replaceChildren(el("p", { class: "placeholder", text: "Loading the document…" }));
  if (!els.reader.open) els.reader.showModal();
  const caseId = c.case_id ?? Number.parseInt(els.caseSelect.value, 10);
  let doc;
  try {
    try {
      doc = await client.getDocument(caseId, c.doc_id, { start: c.char_start, end: c.char_end });
    } catch (err) {
      // The document changed since the answer (span out of range): show it unmarked.
      if (!(err instanceof ApiError && err.code === "invalid_field")) throw err;
      doc = await client.getDocument(caseId, c.doc_id);
    }
  } catch (err) {
    els.readerBody.replaceChildren(el("p", { class: "placeholder", text: `Could not open the document: ${err.message || err}` }));
    return;
  }
  const text = doc.text || "";
  // The server's cut of the span (it checked it against this text).
  const start = doc.highlight?.start;
  const end = doc.highlight?.end;
  els.readerTitle.textContent = doc.title || c.title || c.doc_id;
  const facts = [where, doc.pages != null ? `${doc.pages} pages` : null].filter(Boolean);
  els.readerWhere.textContent = facts.join(" · ");
  const body = el("div", { class: "reader-text" });
  if (Number.isInteger(start) && Number.isInteger(end) && start >= 0 && end <= text.length && start < end) {
    const mark = el("mark", { text: text.slice(start, end) });
    body.append(text.slice(0, start), mark, text.slice(end));
    els.readerBody.replaceChildren(body);
    mark.scrollIntoView({ block: "center" });
  } else {
    body.textContent = text;
    els.readerBody.replaceChildren(body);
  }
}

els.readerClose.addEventListener("click", () => els.reader.close());
els.reader.addEventListener("click", (ev) => {
  if (ev.target === els.reader) els.reader.close(); // the backdrop
});

// ---------------------------------------------------------------- timeline

class Timeline {
  constructor() {
    this.reset();
  }

  reset() {
    els.timeline.replaceChildren();
    els.timelineEmpty.hidden = false;
    this.t0 = null;
    this.llm = new Map(); // call_id -> {item, text, started}
    this.tools = []; // open tool items
    this.rag = []; // open retrieval items
    this.thinking = new Map(); // step -> item
  }

  offset(event) {
    if (this.t0 === null) this.t0 = event.timestamp;
    return `+${(event.timestamp - this.t0).toFixed(2)}s`;
  }

  add(kind, icon, title, sub, event, state = "done") {
    els.timelineEmpty.hidden = true;
    const item = el(
      "li",
      { class: "step", "data-kind": kind, "data-state": state, "data-type": event.type },
      el("span", { class: "icon", "aria-hidden": "true", text: icon }),
      el("div", { class: "body" }, el("div", { class: "title", text: title }), sub ? el("div", { class: "sub", text: sub }) : null),
      el("span", { class: "time", text: this.offset(event) }),
    );
    els.timeline.append(item);
    const box = els.timeline.parentElement;
    if (box.scrollHeight > box.clientHeight) box.scrollTop = box.scrollHeight;
    return item;
  }

  details(item, label, value) {
    const text = pretty(value);
    if (!text) return;
    item.querySelector(".body").append(el("details", {}, el("summary", { text: label }), el("pre", { text: clip(text, 20000) })));
  }

  setSub(item, text) {
    let sub = item.querySelector(".sub");
    if (!sub) {
      sub = el("div", { class: "sub" });
      item.querySelector(".title").after(sub);
    }
    sub.textContent = text;
  }

  finish(item, event, took, state = "done") {
    item.dataset.state = state;
    if (took !== undefined) item.querySelector(".time").textContent = took;
  }

  handle(e) {
    const meta = e.metadata || {};
    const inp = e.input_data || {};
    const out = e.output_data || {};
    switch (e.type) {
      case "query_received":
        this.add("run", "?", "Question received", `Case ${inp.case_id}: ${clip(inp.query, 160)}`, e);
        break;
      case "agent_start":
        this.add("agent", "◆", "Agent started", [e.agent_name, meta.model].filter(Boolean).join(" · "), e);
        break;
      case "thinking_start": {
        const item = this.add("thinking", "✎", `Thinking${meta.step ? ` (step ${meta.step})` : ""}`, null, e, "running");
        this.thinking.set(meta.step ?? "_", { item, started: e.timestamp });
        break;
      }
      case "thinking_end": {
        const open = this.thinking.get(meta.step ?? "_");
        if (!open) break;
        this.thinking.delete(meta.step ?? "_");
        if (out.thought) this.setSub(open.item, out.thought);
        if (e.error) this.setSub(open.item, e.error);
        this.finish(open.item, e, ms(e.timestamp - open.started), e.error ? "error" : "done");
        break;
      }
      case "llm_start": {
        const item = this.add("llm", "✦", "LLM call", [meta.model, meta.step ? `step ${meta.step}` : null].filter(Boolean).join(" · "), e, "running");
        const live = el("div", { class: "live", "aria-hidden": "true" });
        item.querySelector(".body").append(live);
        this.llm.set(meta.call_id ?? "_", { item, live, text: "", started: e.timestamp });
        break;
      }
      case "llm_stream_chunk": {
        const call = this.llm.get(meta.call_id ?? "_") || [...this.llm.values()].at(-1);
        if (!call) break;
        call.text += out.chunk ?? out.text ?? out.content ?? "";
        call.live.textContent = clip(call.text.slice(-400), 400);
        break;
      }
      case "llm_end":
      case "llm_error": {
        const key = meta.call_id ?? "_";
        const call = this.llm.get(key) || [...this.llm.values()].at(-1);
        if (!call) {
          if (e.type === "llm_error") this.add("error", "!", "LLM error", e.error, e, "error");
          break;
        }
        this.llm.delete(key);
        call.live.remove();
        const usage = meta.usage || {};
        const bits = [meta.model, usage.total_tokens != null ? `${usage.total_tokens} tokens` : null].filter(Boolean);
        if (e.error) bits.push(e.error);
        this.setSub(call.item, bits.join(" · "));
        this.details(call.item, "Response", out.response ?? call.text);
        this.finish(call.item, e, ms(e.timestamp - call.started), e.type === "llm_error" ? "error" : "done");
        break;
      }
      case "agent_action":
        this.add("agent", "→", `Decided to use ${e.tool_name || "a tool"}`, clip(inp.query ?? pretty(inp), 200), e);
        break;
      case "tool_start": {
        const item = this.add("tool", "⚙", `Tool · ${e.tool_name || "tool"}`, null, e, "running");
        this.details(item, "Input", inp);
        this.tools.push({ item, name: e.tool_name, started: e.timestamp });
        break;
      }
      case "tool_end": {
        const i = this.tools.findIndex((t) => t.name === e.tool_name);
        const open = i >= 0 ? this.tools.splice(i, 1)[0] : null;
        const item = open?.item ?? this.add("tool", "⚙", `Tool · ${e.tool_name || "tool"}`, null, e);
        if (e.error) this.setSub(item, e.error);
        this.details(item, "Output", out.result ?? out);
        const took = meta.elapsed_ms != null ? ms(meta.elapsed_ms / 1000) : open ? ms(e.timestamp - open.started) : undefined;
        this.finish(item, e, took, e.error ? "error" : "done");
        break;
      }
      case "rag_query_start": {
        const item = this.add("retrieval", "⌕", "Searching the case file", `“${clip(inp.query, 200)}”`, e, "running");
        this.rag.push({ item, started: e.timestamp });
        break;
      }
      case "rag_query_end": {
        const open = this.rag.shift();
        const item = open?.item ?? this.add("retrieval", "⌕", "Searching the case file", null, e);
        const hits = out.hits || [];
        const took = meta.elapsed_ms != null ? ms(meta.elapsed_ms / 1000) : open ? ms(e.timestamp - open.started) : undefined;
        if (e.error) {
          this.setSub(item, `Retrieval failed: ${e.error}`);
        } else {
          item.querySelector(".title").textContent = `Retrieved ${out.count ?? hits.length} passages`;
          const list = el("ol", { class: "hits" });
          for (const h of hits.slice(0, 8)) {
            const where = [h.section, h.page != null ? `p. ${h.page}` : null].filter(Boolean).join(", ");
            const score = typeof h.score === "number" ? ` (score ${h.score.toFixed(2)})` : "";
            list.append(el("li", { text: `[${h.marker ?? "·"}] ${h.title || h.doc_id}${where ? ` — ${where}` : ""}${score}` }));
          }
          if (hits.length) item.querySelector(".body").append(list);
        }
        this.finish(item, e, took, e.error ? "error" : "done");
        break;
      }
      case "agent_end":
        this.add("agent", "◆", "Agent finished", e.error ? e.error : null, e, e.error ? "error" : "done");
        break;
      case "resume_failed":
        this.add("error", "!", "Some steps were lost while disconnected", e.error, e, "error");
        break;
      case "error":
        this.add("error", "!", `Error: ${e.code || meta.code || "error"}`, e.error, e, "error");
        break;
      case "agent_execution_complete":
        this.add("run", "✓", "Answer ready", `${(out.citations || []).length} citations`, e);
        break;
      case "agent_execution_error": {
        const code = e.code || meta.code;
        if (UNVERIFIED_CODES.has(code)) {
          this.add("error", "?", "Answer not verified", e.error, e, "error");
          break;
        }
        const cancelled = code === "cancelled";
        const label = cancelled ? "Cancelled" : code === "timeout" ? "Timed out" : "Run failed";
        this.add("error", cancelled ? "■" : "!", label, e.error, e, "error");
        break;
      }
      default:
        break; // agent_observation repeats tool output; agent_execution_start adds nothing
    }
  }
}

const timeline = new Timeline();

// ---------------------------------------------------------------- answer

class AnswerView {
  constructor() {
    this.reset();
  }

  reset() {
    this.calls = new Map(); // call_id -> text
    this.lastShown = "";
    this.rendered = false;
    this.cancelFrame();
    els.answer.replaceChildren(el("p", { class: "placeholder", text: "Waiting for the agent…" }));
    els.answer.classList.remove("streaming");
    els.runState.textContent = "";
    els.runState.dataset.kind = "";
    els.runMeta.textContent = "";
  }

  chunk(e) {
    const meta = e.metadata || {};
    if (meta.thinking) return; // reasoning tokens: timeline only
    const out = e.output_data || {};
    const key = meta.call_id ?? "_";
    this.calls.set(key, (this.calls.get(key) || "") + (out.chunk ?? out.text ?? out.content ?? ""));
    const part = answerPart(this.calls.get(key));
    if (part === null || part === this.lastShown) return;
    this.lastShown = part;
    // The first text renders at once; later tokens at most once per frame.
    if (!this.rendered) {
      this.rendered = true;
      els.answer.setAttribute("aria-busy", "true");
      renderAnswer(part, true);
    } else if (!this.frame) {
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        renderAnswer(this.lastShown, true);
      });
    }
  }

  cancelFrame() {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
  }

  final(answer) {
    this.cancelFrame();
    els.answer.setAttribute("aria-busy", "false");
    renderAnswer(answer || "The agent returned an empty answer.", false);
  }

  stop(message) {
    this.cancelFrame();
    els.answer.setAttribute("aria-busy", "false");
    els.answer.classList.remove("streaming");
    if (!this.lastShown) els.answer.replaceChildren(el("p", { class: "placeholder", text: message }));
  }
}

const answerView = new AnswerView();

const QUOTE_PREVIEW = 420;

/** The quoted passage; long ones are shortened with a keyboard-accessible toggle. */
function quoteBlock(quote) {
  const block = el("blockquote", { text: quote });
  if (quote.length <= QUOTE_PREVIEW + 80) return block;
  const short = `${quote.slice(0, QUOTE_PREVIEW).replace(/\s+\S*$/, "")}…`;
  block.textContent = short;
  const toggle = el("button", { type: "button", class: "link-button more", "aria-expanded": "false", text: "Show full passage" });
  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") === "true";
    block.textContent = open ? short : quote;
    toggle.setAttribute("aria-expanded", String(!open));
    toggle.textContent = open ? "Show full passage" : "Show less";
  });
  return el("div", {}, block, toggle);
}

/** The passage a citation's sentence(s) come from, the quoted span marked. */
function passageBlock(c) {
  if (!c.passage || c.passage_start == null) return null;
  const start = c.char_start - c.passage_start;
  const end = c.char_end - c.passage_start;
  if (start < 0 || end > c.passage.length || start >= end) return null;
  const block = el("div", { class: "passage" });
  block.append(c.passage.slice(0, start), el("mark", { text: c.passage.slice(start, end) }), c.passage.slice(end));
  block.hidden = true;
  const toggle = el("button", { type: "button", class: "link-button more", "aria-expanded": "false", text: "Show the passage" });
  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") === "true";
    block.hidden = open;
    toggle.setAttribute("aria-expanded", String(!open));
    toggle.textContent = open ? "Show the passage" : "Hide the passage";
  });
  return el("div", {}, toggle, block);
}

/** The warning above an answer that failed its check (null: hide it). */
function showUnverified(code, grounding) {
  if (!code) {
    els.unverified.hidden = true;
    els.unverified.replaceChildren();
    els.answer.classList.remove("unverified-answer");
    return;
  }
  const problems = (grounding?.problems || []).filter((p) => p.kind !== "no_citation");
  const why =
    code === "truncated_answer"
      ? "The answer was cut off at the model's token limit."
      : "It could not be matched to the case documents: " +
        (problems.length
          ? problems
              .slice(0, 3)
              .map((p) =>
                p.kind === "unknown_marker"
                  ? `[${p.marker}] is not a retrieved passage`
                  : p.kind === "unsupported"
                    ? `passage [${p.marker}] does not say “${(p.statement || "").slice(0, 80)}”`
                    : p.kind === "uncited"
                      ? `“${(p.statement || "").slice(0, 80)}” cites nothing`
                      : p.kind.replace(/_/g, " "),
              )
              .join("; ")
          : "it cites no retrieved passage") +
        ".";
  els.unverified.replaceChildren(
    el("strong", { text: "Unverified answer — do not rely on it without checking the sources." }),
    document.createTextNode(`${why}${grounding?.retried ? " One corrective retry did not fix it." : ""}`),
  );
  els.unverified.hidden = false;
  els.answer.classList.add("unverified-answer");
}

/** The citation's document title: a button opening the reader at the quoted span. */
function citeOpen(c) {
  const button = el("button", {
    type: "button",
    class: "link-button cite-title",
    text: c.title || c.doc_id,
    title: "Read it in the document",
  });
  button.addEventListener("click", () => openReader(c));
  return button;
}

function renderCitations(citations) {
  els.citations.replaceChildren();
  els.citationCount.textContent = citations.length ? `(${citations.length})` : "";
  els.citationsEmpty.hidden = citations.length > 0;
  if (!citations.length) els.citationsEmpty.textContent = "The answer cites no passages.";
  citations.forEach((c, i) => {
    const n = c.marker ?? i + 1;
    const where = [c.section, c.page != null ? `page ${c.page}` : null].filter(Boolean).join(" · ");
    els.citations.append(
      el(
        "li",
        { class: "citation", id: `cite-${n}`, tabindex: "-1" },
        el(
          "div",
          { class: "cite-head" },
          el("span", { class: "cite-n", text: `[${n}]` }),
          citeOpen(c),
          where ? el("span", { class: "cite-where", text: where }) : null,
        ),
        quoteBlock(c.quote || ""),
        passageBlock(c),
        el("div", { class: "cite-doc", text: `${c.doc_id}${c.char_start != null ? ` · chars ${c.char_start}–${c.char_end}` : ""}` }),
      ),
    );
  });
}

els.answer.addEventListener("click", (ev) => {
  const a = ev.target.closest("a.marker");
  if (!a) return;
  const target = document.querySelector(a.getAttribute("href"));
  if (!target) return;
  ev.preventDefault();
  target.scrollIntoView({ behavior: matchMedia("(prefers-reduced-motion: reduce)").matches ? "auto" : "smooth", block: "center" });
  target.focus({ preventScroll: true });
  target.classList.add("flash");
  setTimeout(() => target.classList.remove("flash"), 1500);
});

// ---------------------------------------------------------------- asking

function showAlert(text, kind = "error") {
  els.alert.hidden = false;
  els.alert.dataset.kind = kind;
  els.alertText.textContent = text;
}

function setBusy(busy) {
  els.ask.disabled = busy;
  els.cancel.disabled = !busy;
  els.ask.textContent = busy ? "Working…" : "Ask";
}

async function ask() {
  const question = els.question.value.trim();
  const caseId = Number.parseInt(els.caseSelect.value, 10);
  if (!question) {
    els.question.focus();
    showAlert("Type a question first.", "cancelled");
    return;
  }
  if (!Number.isInteger(caseId)) {
    els.caseSelect.focus();
    showAlert("Pick a case first.", "cancelled");
    return;
  }
  els.alert.hidden = true;
  timeline.reset();
  answerView.reset();
  showUnverified(null);
  renderCitations([]);
  els.citationsEmpty.textContent = "Sources will be listed when the answer is complete.";
  setBusy(true);
  els.runState.textContent = "Working…";
  const run = client.sendQuery(question, caseId, {
    streamThinking: els.thinking.checked,
    onEvent: (e) => {
      if (e.type === "llm_stream_chunk") answerView.chunk(e);
      timeline.handle(e);
    },
  });
  current = run;
  const started = performance.now();
  try {
    const result = await run;
    if (current !== run) return;
    answerView.final(result.answer);
    renderCitations(result.citations);
    els.runState.textContent = "Complete";
    els.runState.dataset.kind = "complete";
    const meta = result.metadata || {};
    const bits = [`${((performance.now() - started) / 1000).toFixed(2)} s`, `${run.events.length} events`];
    if (meta.model) bits.push(String(meta.model));
    if (result.grounding) bits.push(`grounded: ${result.grounding.supported} of ${result.grounding.statements} statements supported`);
    els.runMeta.textContent = bits.join(" · ");
  } catch (err) {
    if (current !== run) return;
    if (err instanceof RunError && err.draft) {
      // Delivered, clearly marked, never passed off as verified.
      answerView.final(err.draft.answer);
      renderCitations(err.draft.citations);
      showUnverified(err.code, err.draft.grounding);
      els.runState.textContent = "Unverified";
      els.runState.dataset.kind = "unverified";
      return;
    }
    const cancelled = err instanceof RunError && err.code === "cancelled";
    const timedOut = err instanceof RunError && err.code === "timeout";
    els.runState.textContent = cancelled ? "Cancelled" : timedOut ? "Timed out" : "Failed";
    els.runState.dataset.kind = "error";
    answerView.stop(cancelled ? "Cancelled before an answer was written." : "No answer.");
    if (cancelled) showAlert("The question was cancelled. You can ask it again.", "cancelled");
    else if (err instanceof ConnectionLostError) showAlert(`The connection was lost: ${err.message}`);
    else if (err instanceof RunError) showAlert(`${err.event?.error || err.message}${err.code ? ` (${err.code})` : ""}`);
    else showAlert(`Something went wrong: ${err?.message || err}`);
  } finally {
    if (current === run) setBusy(false);
  }
}

els.form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  ask();
});
els.question.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
    ev.preventDefault();
    if (!els.ask.disabled) ask();
  }
});
els.cancel.addEventListener("click", () => {
  if (!current) return;
  els.cancel.disabled = true;
  els.runState.textContent = "Cancelling…";
  current.cancel().catch(() => {});
});
els.alertRetry.addEventListener("click", () => {
  els.alert.hidden = true;
  if (client.state === "closed") client.connect().catch(() => {});
  ask();
});
for (const chip of document.querySelectorAll(".chip")) {
  chip.addEventListener("click", () => {
    els.question.value = chip.dataset.q;
    els.question.focus();
  });
}

// ---------------------------------------------------------------- start

loadCases();
client.connect().catch((err) => showBanner(`Could not connect: ${err?.message || err}`, "error", { retry: true }));
