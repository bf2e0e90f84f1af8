// Node's built-in test runner against a live legalstream server.
//
//   LEGALSTREAM_HTTP=http://127.0.0.1:PORT node --experimental-websocket --test tests/js
//
// tests/test_web.py starts the real app on uvicorn (ScriptedRunner as producer:
// runs of known shape that take ~1 s and survive a dropped connection) and runs
// this suite. Node 20 has no global WebSocket without --experimental-websocket.
import { test } from "node:test";
import assert from "node:assert/strict";

const HTTP = process.env.LEGALSTREAM_HTTP;
const WS = HTTP ? HTTP.replace(/^http/, "ws") + "/ws/query" : null;
const skip = HTTP ? false : "LEGALSTREAM_HTTP is not set (run through tests/test_web.py)";

const lib = HTTP ? await import(`${HTTP}/static/legalstream.js`).catch(() => null) : null;
// Node cannot import over http(s): load the served module through a data: URL instead.
async function load() {
  if (lib) return lib;
  const source = await (await fetch(`${HTTP}/static/legalstream.js`)).text();
  return import("data:text/javascript;base64," + Buffer.from(source).toString("base64"));
}
const { LegalAgentWebSocket, RunError, ConnectionLostError, ApiError, ticketUrl, httpBase, readSSE } = HTTP
  ? await load()
  : {};

function waitFor(client, type, pred = () => true, ms = 10000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timeout waiting for ${type}`)), ms);
    const off = client.on(type, (e) => {
      if (!pred(e)) return;
      clearTimeout(timer);
      off();
      resolve(e);
    });
  });
}

test("the seed's usage works unchanged", { skip }, async () => {
  const client = new LegalAgentWebSocket(WS);
  const hello = await client.connect();
  assert.equal(hello.type, "connection_established");
  assert.equal(client.connectionId, hello.connection_id);
  const seen = [];
  client.on("agent_start", (e) => seen.push(`agent ${e.agent_name}`));
  client.on("tool_start", (e) => seen.push(`tool ${e.tool_name}`));
  client.on("llm_start", () => seen.push("llm"));
  const done = waitFor(client, "agent_execution_complete");
  client.sendQuery("What was the defendant's response?", 1);
  const final = await done;
  assert.equal(final.output_data.answer, "Scripted answer to: What was the defendant's response?");
  assert.ok(Array.isArray(final.output_data.citations));
  assert.ok(seen.includes("agent Legal Question Answering Agent"));
  assert.ok(seen.includes("tool RAG Legal Retrieval Tool"));
  assert.ok(seen.includes("llm"));
  client.disconnect();
});

test("ask resolves with the answer and citations; on('*') sees every frame in order", { skip }, async () => {
  const client = new LegalAgentWebSocket(WS);
  await client.connect();
  const frames = [];
  client.on("*", (e) => frames.push(e));
  const result = await client.ask("Who signed the agreement?", 1);
  assert.equal(result.answer, "Scripted answer to: Who signed the agreement?");
  assert.deepEqual(result.citations, [{ doc_id: "case-1/x", quote: "q" }]);
  assert.match(result.runId, /^[0-9a-f]{48}$/); // a UUID and its signature
  const runFrames = frames.filter((f) => f.run_id === result.runId);
  assert.deepEqual(
    runFrames.map((f) => f.seq),
    runFrames.map((_, i) => i + 1),
  );
  assert.equal(frames[0].type, "query_received");
  client.disconnect();
});

test("sendQuery returns an awaitable handle with per-run handlers", { skip }, async () => {
  const client = new LegalAgentWebSocket(WS);
  await client.connect();
  const chunks = [];
  const run = client.sendQuery("stream me", 1).on("llm_stream_chunk", (e) => chunks.push(e.output_data.chunk));
  const runId = await run.started;
  const result = await run;
  assert.equal(result.runId, runId);
  assert.equal(chunks.join(""), Array.from({ length: 10 }, (_, i) => `part${i} `).join(""));
  assert.equal(run.final.type, "agent_execution_complete");
  client.disconnect();
});

test("concurrent queries are attributed to the calls that started them", { skip }, async () => {
  const client = new LegalAgentWebSocket(WS);
  await client.connect();
  const questions = ["alpha?", "beta?", "gamma?", "delta?"];
  const results = await Promise.all(questions.map((q) => client.ask(q, 1)));
  results.forEach((r, i) => assert.equal(r.answer, `Scripted answer to: ${questions[i]}`));
  assert.equal(new Set(results.map((r) => r.runId)).size, 4);
  client.disconnect();
});

test("a refused query rejects with RunError and the connection stays usable", { skip }, async () => {
  const client = new LegalAgentWebSocket(WS);
  await client.connect();
  await assert.rejects(client.ask("bad", -1), (err) => err instanceof RunError && err.code === "invalid_case_id");
  await assert.rejects(client.ask("", 1), (err) => err.code === "missing_query");
  const ok = await client.ask("fine", 1);
  assert.equal(ok.answer, "Scripted answer to: fine");
  client.disconnect();
});

test("cancel ends the run with code 'cancelled'", { skip }, async () => {
  const client = new LegalAgentWebSocket(WS);
  await client.connect();
  const run = client.sendQuery("cancel me", 1);
  const runId = await run.started;
  await client.cancel(runId);
  await assert.rejects(run.result, (err) => err instanceof RunError && err.code === "cancelled" && err.runId === runId);
  assert.equal(run.final.type, "agent_execution_error");
  // handle.cancel() works too
  const second = client.sendQuery("cancel me too", 1);
  await second.cancel();
  await assert.rejects(second, (err) => err.code === "cancelled");
  client.disconnect();
});

test("a dropped connection reconnects and resumes the run after its last seq", { skip }, async () => {
  const client = new LegalAgentWebSocket(WS, { backoffInitial: 50 });
  const first = (await client.connect()).connection_id;
  const statuses = [];
  client.on("status", (s) => statuses.push(s.state));
  const frames = [];
  const run = client.sendQuery("survive a drop", 1, {
    onEvent: (e) => {
      frames.push(e);
      if (frames.length === 6) client.ws.close(); // not disconnect(): a drop
    },
  });
  const result = await run;
  assert.equal(result.answer, "Scripted answer to: survive a drop");
  assert.equal(client.reconnects, 1);
  assert.notEqual(client.connectionId, first);
  assert.deepEqual(
    frames.map((f) => f.seq),
    frames.map((_, i) => i + 1),
    "gapless and without duplicates across the reconnect",
  );
  assert.ok(statuses.includes("reconnecting") && statuses.includes("resumed"), statuses.join(","));
  client.disconnect();
});

test("disconnect rejects awaited runs with ConnectionLostError and never reconnects", { skip }, async () => {
  const client = new LegalAgentWebSocket(WS);
  await client.connect();
  const run = client.sendQuery("going away", 1);
  await run.started;
  client.disconnect();
  await assert.rejects(run.result, (err) => err instanceof ConnectionLostError);
  assert.equal(client.state, "closed");
  // A run nobody awaits causes no unhandled rejection (the promise is lazy).
  const client2 = new LegalAgentWebSocket(WS);
  await client2.connect();
  client2.sendQuery("ignored", 1);
  client2.disconnect();
});

test("token auth trades the token for a ticket (POST /ws/ticket) and offers it", { skip }, async () => {
  const calls = [];
  const fakeFetch = async (url, init) => {
    calls.push({ url, init });
    return new Response(JSON.stringify({ ticket: "t".repeat(43), expires_in: 30 }), { status: 200 });
  };
  // auth mode "none" ignores the ticket; ?ticket= keeps the handshake valid there.
  const client = new LegalAgentWebSocket(WS, { token: "jwt-here", fetch: fakeFetch, ticketTransport: "query" });
  await client.connect();
  assert.equal(calls.length, 1);
  assert.equal(calls[0].url, `${HTTP}/ws/ticket`);
  assert.equal(calls[0].init.method, "POST");
  assert.equal(calls[0].init.headers.Authorization, "Bearer jwt-here");
  // a fresh ticket per (re)connect: tickets are single-use
  client.ws.close();
  await waitFor(client, "status", (s) => s.state === "resumed");
  assert.equal(calls.length, 2);
  client.disconnect();

  let provided = 0;
  const viaProvider = new LegalAgentWebSocket(WS, {
    ticketProvider: async () => `p${++provided}`.padEnd(30, "x"),
    ticketTransport: "query",
  });
  await viaProvider.connect();
  assert.equal(provided, 1);
  viaProvider.disconnect();
});

test("ticketUrl maps the WebSocket URL to the ticket endpoint", { skip }, () => {
  assert.equal(ticketUrl("ws://h:1/ws/query"), "http://h:1/ws/ticket");
  assert.equal(ticketUrl("wss://h/legal/ws/query?x=1"), "https://h/legal/ws/ticket");
});

test("a refused handshake rejects connect()", { skip }, async () => {
  const client = new LegalAgentWebSocket(WS.replace("/ws/query", "/nope"), { reconnect: false });
  await assert.rejects(client.connect());
});

test("readSSE parses messages split anywhere, skips comments, joins data lines", { skip }, async () => {
  const wire = ": connected\n\nevent: document_progress\ndata: {\"a\":\ndata: 1}\n\n: keepalive\n\r\nevent: x\r\ndata: é\r\n\r\n";
  const bytes = new TextEncoder().encode(wire);
  const body = new ReadableStream({
    start(controller) {
      for (let i = 0; i < bytes.length; i += 3) controller.enqueue(bytes.slice(i, i + 3)); // splits "é" too
      controller.close();
    },
  });
  const seen = [];
  for await (const m of readSSE(body)) seen.push(m);
  assert.deepEqual(seen, [
    { event: "document_progress", data: '{"a":\n1}', id: null },
    { event: "x", data: "é", id: null },
  ]);
});

test("HTTP calls go to the WebSocket URL's prefix; refusals are ApiError with the code", { skip }, async () => {
  assert.equal(httpBase("wss://h.example/legal/ws/query"), "https://h.example/legal/");
  assert.equal(httpBase("ws://h:8000/ws/query"), "http://h:8000/");
  const client = new LegalAgentWebSocket(WS);
  assert.equal(client.httpUrl("cases/1/documents"), `${HTTP}/cases/1/documents`);
  await assert.rejects(client.getDocument(1, "case-1/no such.md"), (err) => {
    assert.ok(err instanceof ApiError);
    assert.equal(err.status, 404);
    assert.equal(err.code, "unknown_case"); // the scripted server has no retrieval engine
    return true;
  });
});
