// Ask legalstream a question through the real AG-UI client (@ag-ui/client's HttpAgent).
// Run by tests/test_agui_client.py against a live server:
//
//   LEGALSTREAM_HTTP=http://127.0.0.1:PORT node tests/js/agui_http_agent.mjs "question" CASE_ID [TOKEN]
//
// Prints one JSON object: the run's result (answer, citations), the messages the agent
// now holds, every event type seen, and any event the AG-UI schemas reject.
import { HttpAgent } from "@ag-ui/client";
import { EventSchemas } from "@ag-ui/core/schemas";

const [question, caseId, token] = process.argv.slice(2);
const agent = new HttpAgent({
  url: `${process.env.LEGALSTREAM_HTTP}/agui`,
  headers: token ? { Authorization: `Bearer ${token}` } : {},
  threadId: "thread-1",
  initialMessages: [{ id: "user-1", role: "user", content: question }],
});
const events = [];
const invalid = [];
const custom = {};
let runError = null;
try {
  const { result, newMessages } = await agent.runAgent(
    { forwardedProps: { caseId: Number(caseId) } },
    {
      onEvent: ({ event }) => {
        events.push(event.type);
        const checked = EventSchemas.safeParse(event);
        if (!checked.success) invalid.push({ type: event.type, error: checked.error.message.slice(0, 500) });
      },
      onCustomEvent: ({ event }) => {
        (custom[event.name] ??= []).push(event.value);
      },
      onRunErrorEvent: ({ event }) => {
        runError = { message: event.message, code: event.code };
      },
    },
  );
  console.log(JSON.stringify({ result, newMessages, messages: agent.messages, events, invalid, custom, runError }));
} catch (err) {
  console.log(JSON.stringify({ error: String(err?.message ?? err), events, invalid, runError }));
  process.exit(1);
}
