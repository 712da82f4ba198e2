// A real TypeScript MCP client (the official SDK) for the end-to-end tests.
// usage: node call.mjs <url> <tool> <json-arguments> <timeout-ms> <reset-on-progress: 0|1> [abort-after-progress]
// Prints one JSON line: {ok, result | error, progress: [{progress, total, message}], aborted}.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CallToolResultSchema } from "@modelcontextprotocol/sdk/types.js";

const [url, tool, args, timeout, reset, abortAfter] = process.argv.slice(2);
const client = new Client({ name: "mcp-jobs-ts-test", version: "1.0.0" });
await client.connect(new StreamableHTTPClientTransport(new URL(url)));
const progress = [];
const controller = new AbortController();
const out = { progress, aborted: false };
try {
  const result = await client.callTool({ name: tool, arguments: JSON.parse(args) }, CallToolResultSchema, {
    timeout: Number(timeout),
    resetTimeoutOnProgress: reset === "1",
    signal: controller.signal,
    onprogress: (p) => {
      progress.push(p);
      if (abortAfter !== undefined && p.progress >= Number(abortAfter)) controller.abort("user cancelled");
    },
  });
  Object.assign(out, { ok: !result.isError, result });
} catch (error) {
  Object.assign(out, { ok: false, error: String(error), aborted: controller.signal.aborted });
  // The SDK sends notifications/cancelled without awaiting it; a round trip lets it go out
  // before this short-lived script closes the connection (a long-running client needs nothing).
  if (controller.signal.aborted) await client.ping();
}
console.log(JSON.stringify(out));
await client.close();
