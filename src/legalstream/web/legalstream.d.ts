// Type declarations for legalstream.js (served at /static/legalstream.js).
// EventType, FinalEventType and ErrorCode are the protocol's (src/legalstream/events.py);
// tests/test_wire_vocabulary.py checks them against it.

export type EventType =
  | "connection_established"
  | "query_received"
  | "agent_execution_start"
  | "agent_execution_complete"
  | "agent_execution_error"
  | "agent_start"
  | "agent_action"
  | "agent_observation"
  | "agent_end"
  | "tool_start"
  | "tool_end"
  | "llm_start"
  | "llm_end"
  | "llm_error"
  | "llm_stream_chunk"
  | "rag_query_start"
  | "rag_query_end"
  | "thinking_start"
  | "thinking_end"
  | "broadcast"
  | "error"
  | "resume_failed"
  // Case files: messages of GET /cases/{id}/documents/events (SSE), not WebSocket frames.
  | "document_progress"
  | "documents_changed"
  | "ingest_job_done";

/** The frames a run ends with: exactly one per run. */
export type FinalEventType = "agent_execution_complete" | "agent_execution_error";

/** Machine-readable `code` of error frames, agent_execution_error and resume_failed. */
export type ErrorCode =
  | "invalid_json"
  | "invalid_message"
  | "missing_query"
  | "invalid_query"
  | "query_too_long"
  | "invalid_case_id"
  | "invalid_field"
  | "unknown_type"
  | "unknown_run"
  | "unknown_event_type"
  | "binary_not_supported"
  | "too_many_runs"
  | "server_busy"
  | "rate_limited"
  | "forbidden"
  | "forbidden_case"
  | "token_expired"
  | "cancelled"
  | "timeout"
  | "agent_failed"
  | "llm_failed"
  | "retrieval_failed"
  | "ungrounded_answer"
  | "truncated_answer"
  | "run_not_finished"
  | "history_lost"
  | "worker_lost"
  | "internal_error"
  // Case files: HTTP replies (unknown_case also refuses a query).
  | "unknown_case"
  | "case_exists"
  | "unknown_document"
  | "file_too_large"
  | "upload_too_large"
  | "unsupported_type"
  | "invalid_upload"
  | "ingest_busy";

/** Every server frame: the seed's event structure plus run_id, seq, connection_id. */
export interface LegalStreamEvent {
  type: EventType;
  timestamp: number;
  agent_name: string | null;
  task: string | null;
  action: string | null;
  tool_name: string | null;
  input_data: Record<string, unknown> | null;
  output_data: Record<string, unknown> | null;
  error: string | null;
  metadata: Record<string, unknown> | null;
  /** Set on every run event. */
  run_id: string | null;
  /** Gapless per run, from 1. */
  seq: number | null;
  connection_id?: string;
  /** Machine-readable error code (error frames and agent_execution_error). */
  code?: string;
}

export interface Citation {
  chunk_id: string;
  doc_id: string;
  title: string;
  case_id: number;
  page: number | null;
  section: string | null;
  char_start: number;
  char_end: number;
  quote: string;
  score: number;
  /** The [n] marker the answer uses, when the agent numbered its sources. */
  marker?: number;
  /** On a final answer's citation: the retrieved passage the quoted sentence(s) come from,
   * the source text [passage_start:passage_end]. */
  passage?: string;
  passage_start?: number;
  passage_end?: number;
}

/** One thing the grounding check found wrong with an answer. */
export interface GroundingProblem {
  kind: "no_retrieval" | "no_citation" | "unknown_marker" | "unsupported" | "uncited" | "truncated";
  statement: string | null;
  marker: number | null;
}

/** The grounding check of an answer (output_data.grounding of a final frame). */
export interface Grounding {
  /** Every statement cites a passage of this run that supports it, and nothing was cut off. */
  grounded: boolean;
  statements: number;
  supported: number;
  problems: GroundingProblem[];
  /** One corrective retry was made. */
  retried: boolean;
  finish_reason: string | null;
}

/** An answer that failed its check (code ungrounded_answer / truncated_answer): show it as unverified. */
export interface UnverifiedDraft {
  answer: string;
  citations: Citation[];
  grounding: Grounding | null;
}

/** Codes of an agent_execution_error that still carries the answer, as an unverified draft. */
export declare const UNVERIFIED_CODES: ReadonlySet<ErrorCode>;

export interface RunResult {
  runId: string;
  answer: string;
  citations: Citation[];
  /** The grounding check (null from a server that sends none). */
  grounding: Grounding | null;
  metadata: Record<string, unknown>;
  /** The agent_execution_complete frame. */
  event: LegalStreamEvent;
}

export interface QueryOptions {
  /** Default: the client's streamThinking option (true). */
  streamThinking?: boolean;
  /** Only these event types (final frames always arrive). */
  events?: EventType[];
  /** Called with each of this run's frames. */
  onEvent?: (event: LegalStreamEvent) => void;
}

export type ConnectionState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

export interface ConnectionStatus {
  state: ConnectionState | "resumed";
  /** reconnecting: attempt number and the backoff delay (ms) before it. */
  attempt?: number;
  delay?: number;
  /** reconnecting: close code and reason of the connection that dropped. */
  code?: number;
  reason?: string;
  /** closed: why. */
  error?: string;
  /** resumed: the run ids a resume was sent for. */
  runs?: string[];
}

export interface LegalStreamOptions {
  /** A JWT; traded for a single-use ticket via POST /ws/ticket before each (re)connect, and
   * sent as `Authorization: Bearer` on the HTTP calls (case files). */
  token?: string | null;
  /** Returns a ticket (e.g. from your own backend); takes precedence over token. */
  ticketProvider?: (() => string | Promise<string>) | null;
  /** How the ticket is offered: Sec-WebSocket-Protocol "ticket.<t>" (default) or ?ticket=. */
  ticketTransport?: "protocol" | "query";
  /** Reconnect and resume live runs when the connection drops (default true). */
  reconnect?: boolean;
  /** Default 10. */
  maxReconnectAttempts?: number;
  /** Backoff in ms: initial delay (default 250), doubled per attempt up to backoffMax (10000), with jitter. */
  backoffInitial?: number;
  backoffMax?: number;
  /** stream_thinking of queries (default true). */
  streamThinking?: boolean;
  /** ms to wait for query_received (default 30000). */
  ackTimeout?: number;
  /** Log every frame to the console, like the seed's example (default false). */
  debug?: boolean;
  /** WebSocket implementation (default globalThis.WebSocket). */
  WebSocket?: typeof WebSocket;
  /** fetch implementation for POST /ws/ticket and the HTTP calls (default globalThis.fetch). */
  fetch?: typeof fetch;
}

/** A case (GET /cases, POST /cases). */
export interface CaseInfo {
  case_id: number;
  title: string | null;
  documents: number;
  chunks: number;
  created_at: number | null;
}

/** One document of a case (GET /cases/{id}/documents). */
export interface DocumentInfo {
  doc_id: string;
  case_id: number;
  title: string;
  chunks: number;
  chars: number;
  pages: number | null;
  content_hash: string;
  source_path: string | null;
  file_type: "pdf" | "docx" | "html" | "markdown" | "text" | null;
  size_bytes: number | null;
  /** Unix time of the last write of this document. */
  ingested_at: number | null;
  source_name: string | null;
  warnings: string[];
}

/** GET /cases/{id}/documents/{doc_id}: the text citations index into (char_start/char_end). */
export interface DocumentText extends DocumentInfo {
  text: string;
  /** With start/end: the span, as the server cut it. */
  highlight?: { start: number; end: number; text: string };
}

/** The reply to an upload (202): the job whose progress the case's event stream reports. */
export interface UploadAccepted {
  job_id: string;
  case_id: number;
  files: { name: string; size: number }[];
}

/** data of a document_progress event: one file of an ingest job. */
export interface DocumentProgress {
  job_id: string;
  name: string;
  doc_id: string | null;
  case_id: number;
  phase: "parsing" | "embedding" | "indexing" | "done" | "failed";
  /** Set when the phase is done or failed: ingested | replaced | skipped | failed. */
  status: string | null;
  chunks_done: number;
  chunks_total: number;
  eta_seconds: number | null;
  error: string | null;
  warnings: string[];
  file_index: number;
  files_total: number;
}

/** One message of GET /cases/{id}/documents/events. */
export type DocumentEvent =
  | { type: "document_progress"; data: DocumentProgress; event: LegalStreamEvent }
  | {
      type: "documents_changed";
      data: { case_id: number; job_id?: string; added: string[]; removed: string[] };
      event: LegalStreamEvent;
    }
  | {
      type: "ingest_job_done";
      data: { job_id: string; case_id: number; ingested: number; replaced: number; skipped: number; failed: number };
      event: LegalStreamEvent;
    };

export interface DocumentWatch {
  /** Resolves once the event stream is open (start uploads after it, to see all their progress). */
  readonly ready: Promise<void>;
  close(): void;
}

/** An HTTP call the server refused. */
export class ApiError extends Error {
  readonly status: number;
  /** The reply's error code (ErrorCode), when it had one. */
  readonly code: string | null;
  readonly body: unknown;
}

/** The messages of a text/event-stream body (what EventSource does, without its header limits). */
export function readSSE(
  body: ReadableStream<Uint8Array>,
): AsyncGenerator<{ event: string; data: string; id: string | null }>;

/** ws://host/prefix/ws/query -> http://host/prefix/ */
export function httpBase(wsUrl: string): string;

export class RunError extends Error {
  readonly code: string | null;
  readonly event: LegalStreamEvent | null;
  readonly runId: string | null;
  /** With code ungrounded_answer or truncated_answer: the answer, to show as unverified. */
  readonly draft: UnverifiedDraft | null;
}

export class ConnectionLostError extends Error {}

/** A run started by sendQuery(); awaiting it gives the RunResult or throws RunError. */
export class RunHandle implements PromiseLike<RunResult> {
  readonly runId: string | null;
  readonly lastSeq: number;
  readonly final: LegalStreamEvent | null;
  readonly events: LegalStreamEvent[];
  readonly settled: boolean;
  readonly live: boolean;
  /** Resolves with the run id once the server acknowledged the query (query_received). */
  readonly started: Promise<string>;
  readonly result: Promise<RunResult>;
  on(type: EventType | "*", handler: (event: LegalStreamEvent) => void): this;
  cancel(): Promise<void>;
  then<A = RunResult, B = never>(
    onFulfilled?: ((value: RunResult) => A | PromiseLike<A>) | null,
    onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B>;
  catch<B = never>(onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null): Promise<RunResult | B>;
  finally(onFinally?: (() => void) | null): Promise<RunResult>;
}

export class LegalAgentWebSocket {
  /** url: ws(s) URL of /ws/query; default ws/query resolved against the page's base (document.baseURI). */
  constructor(url?: string, options?: LegalStreamOptions);
  readonly url: string;
  /** The raw socket of the current connection (null while disconnected). */
  ws: WebSocket | null;
  connectionId: string | null;
  state: ConnectionState;
  /** Successful reconnects so far. */
  reconnects: number;
  /** Live runs by id. */
  runs: Map<string, RunHandle>;

  connect(): Promise<LegalStreamEvent>;
  sendQuery(query: string, caseId?: number | null, opts?: QueryOptions): RunHandle;
  ask(query: string, caseId?: number | null, opts?: QueryOptions): Promise<RunResult>;
  cancel(runId: string): Promise<void>;
  on(eventType: EventType | "*", handler: (event: LegalStreamEvent) => void): () => void;
  on(eventType: "status", handler: (status: ConnectionStatus) => void): () => void;
  off(eventType: string, handler: (...args: any[]) => void): void;
  handleEvent(event: LegalStreamEvent): void;
  disconnect(): void;

  // Case files over HTTP: the same server (httpBase(url)) and the same token (as a Bearer header).
  /** The URL of an HTTP route of the server, e.g. httpUrl("cases"). */
  httpUrl(path: string): string;
  /** One HTTP call; the parsed JSON reply, or throws ApiError. */
  request(method: string, path: string, init?: { json?: unknown; body?: BodyInit; signal?: AbortSignal }): Promise<any>;
  listCases(): Promise<CaseInfo[]>;
  /** Without caseId the server picks the next free id; ApiError "case_exists" if taken. */
  createCase(title: string, caseId?: number | null): Promise<CaseInfo>;
  deleteCase(caseId: number): Promise<{ case_id: number; deleted_chunks: number }>;
  listDocuments(caseId: number): Promise<DocumentInfo[]>;
  uploadDocuments(
    caseId: number,
    files: Iterable<File | Blob>,
    options?: { title?: string; signal?: AbortSignal },
  ): Promise<UploadAccepted>;
  getDocument(caseId: number, docId: string, span?: { start?: number; end?: number }): Promise<DocumentText>;
  deleteDocument(caseId: number, docId: string): Promise<{ case_id: number; doc_id: string; deleted_chunks: number }>;
  /** Follow a case's ingest progress (SSE read with fetch, so a token works); reconnects after retryMs. */
  watchDocuments(
    caseId: number,
    onEvent: (event: DocumentEvent) => void,
    options?: { retryMs?: number; onStatus?: (status: { state: "open" | "reconnecting" | "closed"; error?: unknown }) => void },
  ): DocumentWatch;
}

export function ticketUrl(wsUrl: string): string;

export default LegalAgentWebSocket;
