// legalstream JavaScript client — an ES module, no build step.
//
//   import { LegalAgentWebSocket } from "/static/legalstream.js";
//   const client = new LegalAgentWebSocket();            // ws(s)://<page base>ws/query
//   await client.connect();
//   client.on("agent_execution_complete", (e) => console.log(e.output_data.answer));
//   client.sendQuery("What was the defendant's response?", 1);   // the seed's usage
//   const { runId, answer, citations } = await client.ask("Who signed?", 1);
//
// The seed's API (connect, sendQuery, on, disconnect) works unchanged; additions:
// on("*"), awaitable runs (sendQuery returns a RunHandle, ask returns a Promise),
// cancel(runId), automatic reconnect with backoff that resumes each unfinished
// run after its last seq, and auth with a JWT (traded for a single-use ticket
// via POST /ws/ticket) or a ticketProvider. docs/clients.md has the details.

// Frame types and codes are the protocol's (src/legalstream/events.py);
// tests/test_wire_vocabulary.py checks every one this file uses against it.
const FINAL_TYPES = new Set(["agent_execution_complete", "agent_execution_error"]);
/** Codes of an agent_execution_error that still carries the answer, as an unverified draft. */
export const UNVERIFIED_CODES = new Set(["ungrounded_answer", "truncated_answer"]);
const SUBPROTOCOL = "legalstream.v1";
/** Close codes after which a reconnect cannot help (policy violation, frame too big). */
const FATAL_CLOSE = new Set([1008, 1009]);

/** A run that ended with agent_execution_error, or a query the server refused. */
export class RunError extends Error {
  constructor(code, message, event = null) {
    super(code ? `${code}: ${message}` : message);
    this.name = "RunError";
    this.code = code ?? null;
    this.event = event;
    this.runId = event?.run_id ?? null;
    // An answer that failed its grounding check is still delivered: show it as unverified.
    const out = event?.output_data;
    this.draft =
      UNVERIFIED_CODES.has(this.code) && out && typeof out.answer === "string"
        ? { answer: out.answer, citations: out.citations ?? [], grounding: out.grounding ?? null }
        : null;
  }
}

/** The connection dropped and could not be re-established (or was closed). */
export class ConnectionLostError extends Error {
  constructor(message) {
    super(message);
    this.name = "ConnectionLostError";
  }
}

/** An HTTP call the server refused: its status, `code` (events.py ErrorCode) and message. */
export class ApiError extends Error {
  constructor(status, code, message, body = null) {
    super(code ? `${code}: ${message}` : message);
    this.name = "ApiError";
    this.status = status;
    this.code = code ?? null;
    this.body = body;
  }
}

/** The page's base URL (document.baseURI), when the module runs in a page served over http(s). */
function pageBase() {
  const base = globalThis.document?.baseURI ?? globalThis.location?.href;
  return typeof base === "string" && /^https?:/.test(base) ? base : null;
}

/** ws(s)://<page base>ws/query: the app may be mounted under a prefix (/legal/). */
function defaultUrl() {
  const base = pageBase();
  if (!base) return "ws://localhost:8000/ws/query";
  const u = new URL("ws/query", base);
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  u.search = "";
  u.hash = "";
  return u.toString();
}

/** ws://host/prefix/ws/query -> http://host/prefix/ (the base of the server's HTTP routes) */
export function httpBase(wsUrl) {
  const u = new URL(wsUrl);
  u.protocol = u.protocol === "wss:" ? "https:" : "http:";
  u.pathname = u.pathname.replace(/[^/]*\/[^/]*$/, "");
  u.search = "";
  u.hash = "";
  return u.toString();
}

/** "case-1/a b.md" -> "case-1/a%20b.md": each segment encoded, the slashes kept. */
function docPath(docId) {
  return String(docId).split("/").map(encodeURIComponent).join("/");
}

/**
 * The messages of a text/event-stream body: {event, data, id}. EventSource cannot
 * send an Authorization header, so the stream is read with fetch() and parsed here.
 */
export async function* readSSE(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = "";
  let data = [];
  let id = null;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      const lines = buffer.split("\n");
      buffer = lines.pop();
      for (let line of lines) {
        if (line.endsWith("\r")) line = line.slice(0, -1);
        if (line === "") {
          if (data.length) yield { event: event || "message", data: data.join("\n"), id };
          event = "";
          data = [];
        } else if (!line.startsWith(":")) {
          const i = line.indexOf(":");
          const field = i < 0 ? line : line.slice(0, i);
          const text = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
          if (field === "event") event = text;
          else if (field === "data") data.push(text);
          else if (field === "id") id = text;
        }
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

async function apiError(response) {
  const text = await response.text().catch(() => "");
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  // rest.py's shape is {"error": message, "code": code}; {"error": {code, message}} is read too.
  const nested = body && typeof body.error === "object" ? body.error : null;
  const code = nested?.code ?? body?.code ?? null;
  const message = nested?.message ?? (typeof body?.error === "string" ? body.error : text.slice(0, 200));
  return new ApiError(response.status, code, message || `HTTP ${response.status}`, body);
}

/** ws://host/prefix/ws/query -> http://host/prefix/ws/ticket */
export function ticketUrl(wsUrl) {
  const u = new URL(wsUrl);
  u.protocol = u.protocol === "wss:" ? "https:" : "http:";
  u.pathname = u.pathname.replace(/\/[^/]*$/, "/ticket");
  u.search = "";
  u.hash = "";
  return u.toString();
}

function codeOf(frame) {
  return frame?.code ?? frame?.metadata?.code ?? null;
}

/**
 * One run started by sendQuery(). Awaitable: `await handle` gives
 * {runId, answer, citations, metadata, event} or throws RunError. The promise is
 * created lazily, so a run nobody awaits never causes an unhandled rejection.
 */
export class RunHandle {
  constructor(client, message, opts = {}) {
    this._client = client;
    this.message = message;
    this.runId = null;
    this.lastSeq = 0;
    this.final = null;
    this.events = [];
    this.settled = false;
    this._handlers = new Map();
    this._outcome = null; // {ok, value}
    this._promise = null;
    this._resolve = null;
    this._reject = null;
    this._resuming = false;
    this._ack = null;
    this._acked = new Promise((resolve, reject) => {
      this._ack = { resolve, reject };
    });
    this._acked.catch(() => {});
    if (typeof opts.onEvent === "function") this.on("*", opts.onEvent);
  }

  /** Resolves with the run id once the server acknowledged the query. */
  get started() {
    return this._acked;
  }

  get live() {
    return this.runId !== null && !this.settled;
  }

  /** Handlers for this run's frames only; "*" for all of them. */
  on(type, handler) {
    if (!this._handlers.has(type)) this._handlers.set(type, []);
    this._handlers.get(type).push(handler);
    return this;
  }

  cancel() {
    return this._acked.then((runId) => this._client.cancel(runId));
  }

  /** The final result as a Promise (same as awaiting the handle). */
  get result() {
    if (!this._promise) {
      this._promise = new Promise((resolve, reject) => {
        this._resolve = resolve;
        this._reject = reject;
      });
      if (this._outcome) this._deliver();
    }
    return this._promise;
  }

  then(onFulfilled, onRejected) {
    return this.result.then(onFulfilled, onRejected);
  }

  catch(onRejected) {
    return this.result.catch(onRejected);
  }

  finally(onFinally) {
    return this.result.finally(onFinally);
  }

  _deliver() {
    if (!this._promise || !this._outcome) return;
    if (this._outcome.ok) this._resolve(this._outcome.value);
    else this._reject(this._outcome.value);
  }

  _settle(ok, value) {
    if (this.settled) return;
    this.settled = true;
    this._outcome = { ok, value };
    this._deliver();
  }

  _push(frame) {
    this._resuming = false;
    if (Number.isInteger(frame.seq)) {
      if (frame.seq <= this.lastSeq) return false; // seen before a reconnect
      this.lastSeq = frame.seq;
    }
    this.events.push(frame);
    this._emit(frame);
    if (frame.type === "agent_execution_complete") {
      this.final = frame;
      const out = frame.output_data || {};
      this._settle(true, {
        runId: frame.run_id,
        answer: out.answer ?? "",
        citations: out.citations ?? [],
        grounding: out.grounding ?? null,
        metadata: frame.metadata ?? {},
        event: frame,
      });
    } else if (frame.type === "agent_execution_error") {
      this.final = frame;
      this._settle(false, new RunError(codeOf(frame), frame.error ?? "run failed", frame));
    }
    return true;
  }

  _emit(frame) {
    for (const key of [frame.type, "*"]) {
      for (const h of this._handlers.get(key) || []) {
        try {
          h(frame);
        } catch (err) {
          console.error("legalstream: run handler failed", err);
        }
      }
    }
  }

  _fail(err) {
    this._settle(false, err);
  }
}

export class LegalAgentWebSocket {
  /**
   * @param {string} [url] ws(s) URL of /ws/query (default: ws/query under this page's base URL, else localhost:8000)
   * @param {object} [options] see legalstream.d.ts (LegalStreamOptions)
   */
  constructor(url = defaultUrl(), options = {}) {
    this.url = url;
    this.options = {
      token: null,
      ticketProvider: null,
      ticketTransport: "protocol",
      reconnect: true,
      maxReconnectAttempts: 10,
      backoffInitial: 250,
      backoffMax: 10000,
      streamThinking: true,
      ackTimeout: 30000,
      debug: false,
      ...options,
    };
    this.ws = null;
    this.connectionId = null;
    this.eventHandlers = new Map();
    this.runs = new Map(); // runId -> RunHandle (live runs)
    this.state = "idle"; // idle | connecting | open | reconnecting | closed
    this.reconnects = 0;
    this._WebSocket = this.options.WebSocket || globalThis.WebSocket;
    this._fetch = this.options.fetch || globalThis.fetch?.bind(globalThis);
    this._closedByUser = false;
    this._awaiting = null;
    this._queue = Promise.resolve();
    this._openWaiters = [];
    this._connecting = null;
    if (!this._WebSocket) {
      throw new Error(
        "no WebSocket implementation: pass options.WebSocket (Node 20: run with --experimental-websocket)",
      );
    }
  }

  // -- the seed's API --------------------------------------------------------------

  /** Open the connection; resolves with the connection_established frame. */
  connect() {
    this._closedByUser = false;
    if (this.state === "open" && this._hello) return Promise.resolve(this._hello);
    if (!this._connecting) {
      this._setState("connecting");
      this._connecting = this._open().finally(() => {
        this._connecting = null;
      });
      this._connecting.catch((err) => {
        if (this.state !== "connecting") return;
        this._setState("closed", { error: String(err?.message || err) });
        const waiters = this._openWaiters;
        this._openWaiters = [];
        for (const w of waiters) w.reject(err);
      });
    }
    return this._connecting;
  }

  /**
   * Send a query (the seed's call). Returns a RunHandle: ignore it (seed usage),
   * or `await` it for {runId, answer, citations}, `.cancel()` it, `.on()` it.
   */
  sendQuery(query, caseId = null, opts = {}) {
    const message = {
      query,
      case_id: caseId,
      stream_thinking: opts.streamThinking ?? this.options.streamThinking,
    };
    if (opts.events) message.events = opts.events;
    const run = new RunHandle(this, message, opts);
    // One query at a time until acknowledged: runs map to calls in order.
    this._queue = this._queue.then(() => this._start(run)).catch(() => {});
    return run;
  }

  /** Ask and wait: resolves with {runId, answer, citations, metadata, event}. */
  ask(query, caseId = null, opts = {}) {
    return this.sendQuery(query, caseId, opts).result;
  }

  /** Register a handler for a frame type, or "*" for every server frame. Returns an unsubscribe function. */
  on(eventType, handler) {
    if (!this.eventHandlers.has(eventType)) this.eventHandlers.set(eventType, []);
    this.eventHandlers.get(eventType).push(handler);
    return () => this.off(eventType, handler);
  }

  off(eventType, handler) {
    const list = this.eventHandlers.get(eventType);
    if (!list) return;
    const i = list.indexOf(handler);
    if (i >= 0) list.splice(i, 1);
  }

  handleEvent(event) {
    for (const key of [event.type, "*"]) {
      for (const handler of this.eventHandlers.get(key) || []) {
        try {
          handler(event);
        } catch (err) {
          console.error(`legalstream: handler for ${key} failed`, err);
        }
      }
    }
    if (this.options.debug) console.log(`[${event.type}]`, event);
  }

  disconnect() {
    this._closedByUser = true;
    this._setState("closed");
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      try {
        ws.close(1000, "client disconnect");
      } catch {
        /* already closed */
      }
    }
    this._failAll(new ConnectionLostError("client disconnected"));
  }

  // -- additions ------------------------------------------------------------------

  /** Ask the server to stop a run; its final frame is agent_execution_error (code "cancelled"). */
  async cancel(runId) {
    await this._whenOpen();
    this.ws.send(JSON.stringify({ type: "cancel", run_id: runId }));
  }

  // -- case files over HTTP (same server, same token) -------------------------------------

  /** The URL of one of the server's HTTP routes, e.g. httpUrl("cases") -> http://host/prefix/cases. */
  httpUrl(path) {
    return new URL(String(path).replace(/^\//, ""), httpBase(this.url)).toString();
  }

  _authHeaders(extra = {}) {
    return this.options.token ? { ...extra, Authorization: `Bearer ${this.options.token}` } : extra;
  }

  /** One HTTP call: the parsed JSON reply, or throws ApiError. `json` is sent as the body. */
  async request(method, path, { json, body, signal } = {}) {
    const headers = this._authHeaders(json === undefined ? {} : { "Content-Type": "application/json" });
    const response = await this._fetch(this.httpUrl(path), {
      method,
      headers,
      body: json === undefined ? body : JSON.stringify(json),
      signal,
    });
    if (!response.ok) throw await apiError(response);
    const text = await response.text();
    return text ? JSON.parse(text) : null;
  }

  async listCases() {
    return (await this.request("GET", "cases")).cases ?? [];
  }

  /** POST /cases; without caseId the server picks the next free id. Resolves with the CaseInfo. */
  async createCase(title, caseId = null) {
    const json = caseId == null ? { title } : { title, case_id: caseId };
    return (await this.request("POST", "cases", { json })).case;
  }

  deleteCase(caseId) {
    return this.request("DELETE", `cases/${caseId}`);
  }

  async listDocuments(caseId) {
    return (await this.request("GET", `cases/${caseId}/documents`)).documents ?? [];
  }

  /** Upload files (File or Blob) to a case; resolves with {job_id, case_id, files}. Progress: watchDocuments. */
  uploadDocuments(caseId, files, { title, signal } = {}) {
    const form = new FormData();
    for (const file of files) form.append("file", file, file.name ?? "upload");
    if (title) form.append("title", title);
    return this.request("POST", `cases/${caseId}/documents`, { body: form, signal });
  }

  /** A document's text and metadata; with start/end also `highlight: {start, end, text}`. */
  getDocument(caseId, docId, { start, end } = {}) {
    const query = start != null && end != null ? `?start=${start}&end=${end}` : "";
    return this.request("GET", `cases/${caseId}/documents/${docPath(docId)}${query}`);
  }

  deleteDocument(caseId, docId) {
    return this.request("DELETE", `cases/${caseId}/documents/${docPath(docId)}`);
  }

  /**
   * Follow a case's ingest events (GET /cases/{id}/documents/events, SSE read with fetch so
   * the token goes in a header). `onEvent({type, data, event})`: type is document_progress,
   * documents_changed or ingest_job_done, data its payload, event the envelope. Reconnects
   * after `retryMs` when the stream drops. `ready` resolves once the stream is open.
   */
  watchDocuments(caseId, onEvent, { retryMs = 2000, onStatus = null } = {}) {
    const controller = new AbortController();
    const { signal } = controller;
    let opened;
    const ready = new Promise((resolve) => (opened = resolve));
    const status = (s) => onStatus?.(s);
    const run = async () => {
      while (!signal.aborted) {
        try {
          const response = await this._fetch(this.httpUrl(`cases/${caseId}/documents/events`), {
            headers: this._authHeaders({ Accept: "text/event-stream" }),
            signal,
          });
          if (!response.ok) throw await apiError(response);
          opened();
          status({ state: "open" });
          for await (const message of readSSE(response.body)) {
            let envelope;
            try {
              envelope = JSON.parse(message.data);
            } catch {
              continue;
            }
            // The data is an event envelope (events.py): the payload is its output_data.
            const data = envelope && "output_data" in envelope ? (envelope.output_data ?? {}) : envelope;
            try {
              onEvent({ type: message.event === "message" ? envelope?.type : message.event, data, event: envelope });
            } catch (err) {
              console.error("legalstream: documents handler failed", err);
            }
          }
        } catch (err) {
          if (signal.aborted) return;
          if (err instanceof ApiError && err.status >= 400 && err.status < 500 && err.status !== 429) {
            status({ state: "closed", error: err });
            return; // refused (no such case, no access): retrying cannot help
          }
          status({ state: "reconnecting", error: err });
        }
        if (signal.aborted) return;
        await new Promise((r) => setTimeout(r, retryMs));
      }
    };
    run();
    return { ready, close: () => controller.abort() };
  }

  // -- internals: connection --------------------------------------------------------

  _setState(state, detail = {}) {
    if (this.state === state && !detail.attempt) return;
    this.state = state;
    this.handleStatus({ state, ...detail });
  }

  handleStatus(status) {
    for (const handler of this.eventHandlers.get("status") || []) {
      try {
        handler(status);
      } catch (err) {
        console.error("legalstream: status handler failed", err);
      }
    }
  }

  async _ticket() {
    if (typeof this.options.ticketProvider === "function") {
      return await this.options.ticketProvider();
    }
    const response = await this._fetch(ticketUrl(this.url), {
      method: "POST",
      headers: { Authorization: `Bearer ${this.options.token}` },
    });
    if (!response.ok) {
      const text = await response.text().catch(() => "");
      const err = new Error(`POST /ws/ticket: HTTP ${response.status} ${text.slice(0, 200)}`);
      err.status = response.status;
      throw err;
    }
    const data = await response.json();
    if (!data || typeof data.ticket !== "string") throw new Error("POST /ws/ticket returned no ticket");
    return data.ticket;
  }

  async _socket() {
    const auth = this.options.token || this.options.ticketProvider;
    if (!auth) return new this._WebSocket(this.url);
    const ticket = await this._ticket();
    if (this.options.ticketTransport === "query") {
      const u = new URL(this.url);
      u.searchParams.set("ticket", ticket);
      return new this._WebSocket(u.toString());
    }
    return new this._WebSocket(this.url, [SUBPROTOCOL, `ticket.${ticket}`]);
  }

  _open() {
    return this._socket().then(
      (ws) =>
        new Promise((resolve, reject) => {
          let established = false;
          this.ws = ws;
          ws.onmessage = (message) => {
            let frame;
            try {
              frame = JSON.parse(message.data);
            } catch {
              return;
            }
            if (!established && frame.type === "connection_established") {
              established = true;
              this.connectionId = frame.connection_id;
              this._hello = frame;
              this._setState("open");
              this._onOpen();
              resolve(frame);
            }
            this._dispatch(frame);
          };
          ws.onerror = (error) => {
            if (!established) reject(error?.error || new Error(`WebSocket error connecting to ${this.url}`));
          };
          ws.onclose = (event) => {
            if (this.ws === ws) this.ws = null;
            if (!established) {
              reject(new ConnectionLostError(`connection refused (code ${event.code})`));
              return;
            }
            this._onClose(event);
          };
        }),
    );
  }

  _onOpen() {
    const waiters = this._openWaiters;
    this._openWaiters = [];
    for (const w of waiters) w.resolve();
  }

  _whenOpen() {
    if (this.state === "open" && this.ws) return Promise.resolve();
    if (this.state === "idle" || (this.state === "closed" && !this._closedByUser)) {
      this.connect().catch(() => {});
    }
    if (this.state === "closed") return Promise.reject(new ConnectionLostError("not connected"));
    return new Promise((resolve, reject) => this._openWaiters.push({ resolve, reject }));
  }

  _onClose(event) {
    this._awaiting?._ackWait?.retry();
    if (this._closedByUser) return;
    if (!this.options.reconnect || FATAL_CLOSE.has(event.code)) {
      this._die(new ConnectionLostError(`connection closed (code ${event.code} ${event.reason || ""})`));
      return;
    }
    this._reconnect(event);
  }

  async _reconnect(event) {
    const { maxReconnectAttempts, backoffInitial, backoffMax } = this.options;
    let delay = backoffInitial;
    let lastError = null;
    for (let attempt = 1; attempt <= maxReconnectAttempts; attempt++) {
      const wait = Math.round(delay * (0.5 + Math.random()));
      this._setState("reconnecting", { attempt, delay: wait, code: event.code, reason: event.reason });
      await new Promise((r) => setTimeout(r, wait));
      if (this._closedByUser) return;
      delay = Math.min(backoffMax, delay * 2);
      try {
        await this._open();
      } catch (err) {
        lastError = err;
        continue;
      }
      this.reconnects += 1;
      for (const run of this.runs.values()) {
        if (!run.live) continue;
        const resume = {
          type: "resume",
          run_id: run.runId,
          after_seq: run.lastSeq,
          stream_thinking: run.message.stream_thinking,
        };
        if (run.message.events) resume.events = run.message.events;
        run._resuming = true;
        this.ws.send(JSON.stringify(resume));
      }
      this.handleStatus({ state: "resumed", runs: [...this.runs.keys()] });
      return;
    }
    this._die(
      new ConnectionLostError(
        `reconnect failed after ${maxReconnectAttempts} attempts${lastError ? `: ${lastError.message || lastError}` : ""}`,
      ),
    );
  }

  _die(err) {
    this._setState("closed", { error: err.message });
    const waiters = this._openWaiters;
    this._openWaiters = [];
    for (const w of waiters) w.reject(err);
    this._failAll(err);
  }

  _failAll(err) {
    for (const run of this.runs.values()) run._fail(err);
    this.runs.clear();
    this._awaiting?._ackWait?.error(err);
  }

  // -- internals: queries -------------------------------------------------------------

  async _start(run) {
    const attempts = this.options.maxReconnectAttempts + 1;
    for (let i = 0; i < attempts; i++) {
      try {
        await this._whenOpen();
      } catch (err) {
        run._ack.reject(err);
        run._fail(err);
        return;
      }
      const outcome = await new Promise((resolve) => {
        const timer = setTimeout(
          () => resolve({ error: new RunError("timeout", "no acknowledgement for the query") }),
          this.options.ackTimeout,
        );
        run._ackWait = {
          ok: () => {
            clearTimeout(timer);
            resolve({ ok: true });
          },
          error: (error) => {
            clearTimeout(timer);
            resolve({ error });
          },
          retry: () => {
            clearTimeout(timer);
            resolve({ retry: true });
          },
        };
        this._awaiting = run;
        try {
          this.ws.send(JSON.stringify(run.message));
        } catch {
          run._ackWait.retry();
        }
      });
      this._awaiting = null;
      run._ackWait = null;
      if (outcome.retry) continue;
      if (outcome.error) {
        run._ack.reject(outcome.error);
        run._fail(outcome.error);
      }
      return;
    }
    const err = new ConnectionLostError("could not send the query");
    run._ack.reject(err);
    run._fail(err);
  }

  // -- internals: frames ---------------------------------------------------------------

  _dispatch(frame) {
    const runId = frame.run_id;
    let run = runId ? this.runs.get(runId) : undefined;
    if (!run && frame.type === "query_received" && this._awaiting) {
      run = this._awaiting;
      run.runId = runId;
      this.runs.set(runId, run);
      run._ack.resolve(runId);
      run._ackWait?.ok();
    }
    if (run) {
      if (frame.type === "error") {
        if (codeOf(frame) === "unknown_run" && run._resuming) {
          run._fail(new RunError("unknown_run", frame.error ?? "run is gone", frame));
          this.runs.delete(runId);
        }
        run._emit(frame);
      } else if (frame.type === "resume_failed") {
        run._resuming = false;
        run.events.push(frame);
        run._emit(frame);
        const meta = frame.metadata || {};
        if (meta.first_available_seq == null && meta.status === "running") {
          run._fail(new RunError("resume_failed", frame.error ?? "events lost", frame));
          this.runs.delete(runId);
        }
      } else {
        if (!run._push(frame)) return; // duplicate after a resume: not re-dispatched
        if (FINAL_TYPES.has(frame.type)) this.runs.delete(runId);
      }
    } else if (frame.type === "error" && !runId && this._awaiting?._ackWait) {
      this._awaiting._ackWait.error(new RunError(codeOf(frame), frame.error ?? "query refused", frame));
    }
    this.handleEvent(frame);
  }
}

export default LegalAgentWebSocket;
