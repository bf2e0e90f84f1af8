// Validate an AsyncAPI document with the AsyncAPI initiative's own parser.
// Run by tests/test_asyncapi.py:  node tests/js/asyncapi_parse.mjs docs/asyncapi.json
// Prints {"version", "errors": [...], "warnings": N, "channels", "messages"}; exits 1 on errors.
import { readFileSync } from "node:fs";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";

const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(process.argv[2], "utf8"));
const errors = diagnostics
  .filter((d) => d.severity === DiagnosticSeverity.Error)
  .map((d) => `${d.code}: ${d.message} at ${JSON.stringify(d.path)}`);
const out = {
  version: document?.version() ?? null,
  errors,
  warnings: diagnostics.filter((d) => d.severity === DiagnosticSeverity.Warning).length,
  channels: document ? document.channels().all().map((c) => c.address()) : [],
  messages: document ? document.allMessages().all().length : 0,
};
console.log(JSON.stringify(out));
process.exit(errors.length || !document ? 1 : 0);
