// Check AG-UI event streams with the AG-UI client's own code: the zod schema of every
// event (@ag-ui/core/schemas) and the client's order verifier (verifyEvents, the one
// HttpAgent runs). Run by tests/test_agui*.py:
//
//   node tests/js/agui_verify.mjs STREAMS.json     (a JSON list of event lists)
//
// Prints {"checked": N, "failures": [{"stream", "error"}]}; exits 1 on any failure.
import { readFileSync } from "node:fs";
import { from, lastValueFrom, toArray } from "rxjs";
import { verifyEvents } from "@ag-ui/client";
import { EventSchemas } from "@ag-ui/core/schemas";

const streams = JSON.parse(readFileSync(process.argv[2], "utf8"));
const failures = [];
for (const [index, events] of streams.entries()) {
  try {
    for (const event of events) EventSchemas.parse(event);
    const passed = await lastValueFrom(from(events).pipe(verifyEvents(), toArray()));
    if (passed.length !== events.length) throw new Error(`verifier passed ${passed.length} of ${events.length}`);
  } catch (err) {
    failures.push({ stream: index, error: String(err?.message ?? err).slice(0, 2000) });
  }
}
console.log(JSON.stringify({ checked: streams.length, failures }));
process.exit(failures.length ? 1 : 0);
