// Drives the MCP Tasks extension (io.modelcontextprotocol/tasks, protocol 2026-07-28) with the
// official requester library, @modelcontextprotocol/ext-tasks, on top of the official v2 client
// (@modelcontextprotocol/client), for the end-to-end tests.
//
// usage: node tasks.mjs <url> <tool> <json-arguments> <settle|cancel>
//   settle: call the tool as a task (task preference "require") and wait for its terminal state.
//   cancel: call it as a task, wait until a tasks/get poll shows it `working`, cancel it
//           (tasks/cancel), wait for the library to settle, then poll tasks/get until the
//           server's record is terminal too. A task that ends before a poll sees it working is
//           not cancelled (its own terminal status is reported).
// Environment: MCP_TASKS_TIMEOUT_MS, the overall deadline (default 60000); MCP_TASKS_TRACE=1 logs
// every raw request and response to stderr.
//
// The last line on stdout is one JSON object:
//   {ok, taskId, status, result, polls, error, serverStatus, observed}
// - ok: the flow ran to a terminal state without the library or the server raising an error
//   (a tool error is still ok: status "completed" with result.isError).
// - status: the library's terminal outcome ("completed" | "failed" | "cancelled"), or null.
// - result: the CallToolResult of a completed task, else null.
// - polls: the number of tasks/get results the library observed (before settling).
// - serverStatus: the status of the last tasks/get answer (cancel mode polls until terminal).
// - observed: the statuses of those tasks/get answers, in order.
// Exit codes: 0 when the flow ran (whatever the task's fate, errors included in the JSON);
// 1 connect failure or crash; 2 usage; 3 overall timeout.
//
// Why the raw request path: the SDK's Client rejects `resultType: "task"` on tools/call (its wire
// codec only knows "complete" and "input_required"), so ext-tasks requires the host to pass a
// `rawDispatch` request coordinator plus the `v2RequestFraming` it used when connecting. The
// coordinator below sends through the SDK's own StreamableHTTPClientTransport (which derives the
// MCP-Protocol-Version / Mcp-Method / Mcp-Name headers from the framed body) with its own request
// ids, and takes those responses off the transport before the Client sees them.
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { createTaskSessionFromClient, DispatchError } from "@modelcontextprotocol/ext-tasks/client";

const PROTOCOL_VERSION = "2026-07-28";
const TASKS = "io.modelcontextprotocol/tasks";
const CLIENT_INFO = { name: "mcp-jobs-ts-tasks-test", version: "1.0.0" };
const CLIENT_CAPABILITIES = { extensions: { [TASKS]: {} } };

const out = { ok: false, taskId: null, status: null, result: null, polls: 0, error: null, serverStatus: null, observed: [] };
let printed = false;
function finish(code) {
  if (!printed) {
    printed = true;
    console.log(JSON.stringify(out));
  }
  process.exitCode = code;
  return code;
}
const describe = (error) => {
  if (!(error instanceof Error)) return String(error);
  let text = `${error.name}: ${error.message}`;
  for (let cause = error.cause, depth = 0; cause !== undefined && depth < 4; cause = cause?.cause, depth++)
    text += ` [cause: ${cause instanceof Error ? `${cause.name}: ${cause.message}` : JSON.stringify(cause)}]`;
  return text;
};

const [url, tool, argsJson, mode] = process.argv.slice(2);
if (!url || !tool || argsJson === undefined || !["settle", "cancel"].includes(mode)) {
  console.error("usage: node tasks.mjs <url> <tool> <json-arguments> <settle|cancel>");
  out.error = "usage";
  process.exit(finish(2));
}
let toolArgs;
try {
  toolArgs = JSON.parse(argsJson);
} catch (error) {
  out.error = `bad arguments JSON: ${describe(error)}`;
  process.exit(finish(2));
}

const timeoutMs = Number(process.env.MCP_TASKS_TIMEOUT_MS ?? 60000);
const deadline = setTimeout(() => {
  out.ok = false;
  out.error = `timed out after ${timeoutMs} ms${out.error ? ` (${out.error})` : ""}`;
  finish(3);
  process.exit(3);
}, timeoutMs);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const TERMINAL = ["completed", "failed", "cancelled"];
// Resolved with the status of the first tasks/get answer that shows the task working or terminal.
let sawWorking;
const workingSeen = new Promise((resolve) => (sawWorking = resolve));

// ---- the host's raw request coordinator (owns ids and response matching) ----
const transport = new StreamableHTTPClientTransport(new URL(url));
const client = new Client(CLIENT_INFO, {
  capabilities: CLIENT_CAPABILITIES,
  versionNegotiation: { mode: { pin: PROTOCOL_VERSION } },
});
const trace = process.env.MCP_TASKS_TRACE === "1" ? (label, value) => console.error(label, JSON.stringify(value)) : () => {};
const pending = new Map();
let nextId = 0;
let countPolls = true;

function rawDispatch(request, options = {}) {
  const id = `ext-tasks-${++nextId}`;
  const message = { jsonrpc: "2.0", id, method: request.method, ...(request.params === undefined ? {} : { params: request.params }) };
  const signal = options.signal;
  const timeout = options.context?.requestTimeoutMs ?? 30000;
  return new Promise((resolve, reject) => {
    let timer;
    const settle = (fn, value) => {
      if (!pending.has(id)) return;
      pending.delete(id);
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      fn(value);
    };
    const onAbort = () => settle(reject, signal.reason instanceof Error ? signal.reason : new DOMException("aborted", "AbortError"));
    pending.set(id, (response) => {
      trace("<-", response);
      if (request.method === "tasks/get" && response.result !== undefined) {
        const status = response.result?.status;
        out.serverStatus = status ?? null;
        if (countPolls) {
          out.polls += 1;
          out.observed.push(status);
        }
        if (status === "working" || TERMINAL.includes(status)) sawWorking(status);
      }
      settle(resolve, response.error !== undefined ? { kind: "error", error: response.error } : { kind: "result", result: response.result });
    });
    if (signal?.aborted) return onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
    trace("->", { message, headers: options.context?.headers });
    timer = setTimeout(() => settle(reject, new DispatchError(`${request.method} timed out after ${timeout} ms`, true)), timeout);
    transport
      .send(message, { requestSignal: signal, ...(options.context?.headers ? { headers: options.context.headers } : {}) })
      .catch((error) => settle(reject, new DispatchError(`${request.method} failed: ${describe(error)}`, false, { cause: error })));
  });
}

let session;
try {
  try {
    await client.connect(transport);
  } catch (error) {
    out.error = `connect failed: ${describe(error)}`;
    clearTimeout(deadline);
    process.exit(finish(1));
  }
  const clientOnMessage = transport.onmessage;
  transport.onmessage = (message, extra) => {
    if (message && typeof message === "object" && !("method" in message) && pending.has(message.id)) {
      pending.get(message.id)(message);
      return;
    }
    clientOnMessage?.(message, extra);
  };

  session = createTaskSessionFromClient(client, {
    endpointId: url,
    rawDispatch,
    v2RequestFraming: { protocolVersion: PROTOCOL_VERSION, clientInfo: CLIENT_INFO, clientCapabilities: CLIENT_CAPABILITIES },
    onError: (error) => {
      out.error = out.error ?? `background: ${describe(error)}`;
    },
  });

  const execution = await session.callTool(tool, toolArgs, { task: { preference: "require" } });
  out.taskId = execution.handle?.taskId ?? null;
  const settlement = execution.settle();
  if (mode === "cancel") {
    // Cancel only a task a poll saw working: one that ended first is left to settle as it did.
    const seen = await Promise.race([workingSeen, settlement.then(() => null)]);
    if (seen === "working") await execution.cancel();
  }
  const { outcome } = await settlement;
  countPolls = false;
  out.status = outcome.status;
  if (outcome.status === "completed") out.result = outcome.result;
  if (outcome.status === "failed") out.error = describe(outcome.error);
  if (mode === "cancel" && out.taskId !== null) {
    // The library ends its wait at the server's cancel acknowledgement (V2 cancellation is
    // cooperative); confirm the server's own record reaches a terminal state.
    const controller = session.task(out.taskId);
    for (;;) {
      const view = await controller.snapshot();
      out.serverStatus = view.status;
      if (TERMINAL.includes(view.status)) break;
      await sleep(Math.min(Math.max(view.suggestedPollIntervalMs ?? 250, 100), 1000));
    }
  }
  out.ok = outcome.status !== "failed" && out.error === null;
} catch (error) {
  out.ok = false;
  out.error = describe(error);
} finally {
  try {
    await session?.close();
  } catch (error) {
    out.error = out.error ?? `session close: ${describe(error)}`;
  }
  await client.close().catch(() => {});
  clearTimeout(deadline);
}
finish(0);
