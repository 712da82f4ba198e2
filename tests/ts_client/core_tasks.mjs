// Drives MCP 2025-11-25 core tasks (`params.task` on tools/call, tasks/get|result|list|cancel)
// with the official TypeScript SDK 1.x's own task API, `client.experimental.tasks`, for the
// end-to-end tests (tests/test_core_tasks.py).
//
// usage: node core_tasks.mjs <url> <tool> <json-arguments> <mode> [second-url]
//   stream:        callToolStream with a task ({ttl}), read to its end. A stream that ends in an
//                  error (a failed task) is followed by getTaskResult, for the tool's own result.
//   list:          as stream, and once the task is created, listTasks (every page) must show it.
//   cancel:        as stream; once a tasks/get poll shows the task working and two progress
//                  notifications came (the job runs on a worker), cancelTask; the stream then runs
//                  to its end; then getTask, and a second cancelTask (refused: the task ended).
//   across-result: create the task on <url> and leave: the stream is dropped at taskCreated and
//                  the session terminated (DELETE). A second Client on <second-url> then calls
//                  getTask, listTasks and getTaskResult, then getTask again.
//   across-cancel: as across-result, but the second Client polls getTask until the job has been
//                  updated twice (lastUpdatedAt moved: started, reported), then cancelTask, getTask,
//                  cancelTask again, getTaskResult.
// Environment: MCP_CORE_TASKS_TIMEOUT_MS, the overall deadline (default 60000); MCP_CORE_TASKS_TTL,
// the ttl asked for (default 60000); MCP_CORE_TASKS_TRACE=1 logs every HTTP exchange to stderr.
//
// The last line on stdout is one JSON object (keys a mode does not use stay null):
//   {ok, mode, error, protocolVersion, tasksCapability, taskSupport, standalone, taskId, created,
//    messages, statuses, result, streamError, taskResult, progress, notifications,
//    listed, cancel, afterCancel, cancelAgain, other}
// - ok: the flow ran to its end without an unexpected error (a failed or cancelled task is ok).
// - tasksCapability: the server's `capabilities.tasks`; taskSupport: the tool's
//   `execution.taskSupport` in tools/list (null when absent); standalone: the session's GET SSE
//   stream was open before the call.
// - messages: what callToolStream yielded, in order: {type, status, statusMessage, ttl,
//   pollInterval, error}; statuses: the status of each taskStatus message; created: the
//   taskCreated Task; result: the final `result` message's CallToolResult; streamError: the final
//   `error` message as {code, message}; taskResult: getTaskResult's answer (stream, list, cancel:
//   after a stream that ended in an error) as {result} or {error: {code, message}}.
// - progress: every notifications/progress for the call's token ({progress, total, message}),
//   through the `onprogress` request option; notifications: every notifications/tasks/status
//   (its Task params), through a notification handler. Both come on the session's standalone
//   stream; the script waits (bounded) for a terminal status notification before it ends.
// - listed: {found, pages, task} (list, across-*: `other.listed`).
// - cancel / afterCancel: the cancelTask answer and the getTask after it (Tasks); cancelAgain: the
//   second cancelTask's {code, message} (or {task} if it was not refused).
// - other (across-*): {get, listed, result, after, cancel, afterCancel, cancelAgain,
//   resultAfterCancel} from the second Client.
// Exit codes: 0 when the flow ran (its errors are in the JSON); 1 connect failure or crash;
// 2 usage; 3 overall timeout.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CallToolResultSchema, McpError, TaskStatusNotificationSchema } from "@modelcontextprotocol/sdk/types.js";

const MODES = ["stream", "list", "cancel", "across-result", "across-cancel"];
const TERMINAL = ["completed", "failed", "cancelled"];
const CLIENT_INFO = { name: "mcp-jobs-ts-core-tasks-test", version: "1.0.0" };

const out = {
  ok: false, mode: null, error: null, protocolVersion: null, tasksCapability: null, taskSupport: null,
  standalone: false, taskId: null, created: null, messages: [], statuses: [], result: null, streamError: null,
  taskResult: null, progress: [], notifications: [], listed: null, cancel: null, afterCancel: null,
  cancelAgain: null, other: null,
};
let printed = false;
function finish(code) {
  if (!printed) {
    printed = true;
    console.log(JSON.stringify(out));
  }
  process.exitCode = code;
  return code;
}
const describe = (error) => (error instanceof Error ? `${error.name}: ${error.message}` : String(error));
const wireError = (error) => ({ code: error instanceof McpError ? error.code : null, message: describe(error) });

const [url, tool, argsJson, mode, secondUrl] = process.argv.slice(2);
if (!url || !tool || argsJson === undefined || !MODES.includes(mode) || (mode.startsWith("across") && !secondUrl)) {
  console.error(`usage: node core_tasks.mjs <url> <tool> <json-arguments> <${MODES.join("|")}> [second-url]`);
  out.error = "usage";
  process.exit(finish(2));
}
out.mode = mode;
let toolArgs;
try {
  toolArgs = JSON.parse(argsJson);
} catch (error) {
  out.error = `bad arguments JSON: ${describe(error)}`;
  process.exit(finish(2));
}

const timeoutMs = Number(process.env.MCP_CORE_TASKS_TIMEOUT_MS ?? 60000);
const ttl = Number(process.env.MCP_CORE_TASKS_TTL ?? 60000);
const deadline = setTimeout(() => {
  out.ok = false;
  out.error = `timed out after ${timeoutMs} ms${out.error ? ` (${out.error})` : ""}`;
  finish(3);
  process.exit(3);
}, timeoutMs);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- waiting on what arrives (progress, status notifications), never on a fixed time ----
const waiters = new Set();
function arrived() {
  for (const waiter of waiters) waiter();
}
/** Resolves true once `condition()` holds (checked whenever something arrives), false after `ms`. */
function until(condition, ms) {
  if (condition()) return Promise.resolve(true);
  return new Promise((resolve) => {
    const check = () => {
      if (!condition()) return;
      clearTimeout(timer);
      waiters.delete(check);
      resolve(true);
    };
    const timer = setTimeout(() => {
      waiters.delete(check);
      resolve(false);
    }, ms);
    waiters.add(check);
  });
}

// ---- a Client whose transport tells when the session's standalone GET stream is open ----
const trace = process.env.MCP_CORE_TASKS_TRACE === "1" ? (...parts) => console.error(...parts) : () => {};
function connectable(target) {
  const connection = { standalone: false };
  const watchingFetch = async (input, init) => {
    trace("->", init?.method ?? "GET", init?.body ?? "");
    const response = await fetch(input, init);
    trace("<-", response.status, response.headers.get("content-type"));
    if ((init?.method ?? "GET") === "GET" && response.ok) {
      connection.standalone = true;
      arrived();
    }
    return response;
  };
  connection.transport = new StreamableHTTPClientTransport(new URL(target), { fetch: watchingFetch });
  connection.client = new Client(CLIENT_INFO);
  return connection;
}

function recordNotifications(client) {
  client.setNotificationHandler(TaskStatusNotificationSchema, (notification) => {
    const { _meta, ...task } = notification.params;
    out.notifications.push(task);
    arrived();
  });
}

const onprogress = (p) => {
  out.progress.push({ progress: p.progress, total: p.total ?? null, message: p.message ?? null });
  arrived();
};

function recordMessage(message) {
  const task = message.task ?? {};
  out.messages.push({
    type: message.type,
    status: task.status ?? null,
    statusMessage: task.statusMessage ?? null,
    ttl: task.ttl ?? null,
    pollInterval: task.pollInterval ?? null,
    error: message.type === "error" ? wireError(message.error) : null,
  });
  if (message.type === "taskCreated") out.created = message.task;
  if (message.type === "taskStatus") out.statuses.push(message.task.status);
  if (message.type === "result") out.result = message.result;
  if (message.type === "error") out.streamError = wireError(message.error);
}

/** Every page of listTasks, until `taskId` is found or the pages end. */
async function findListed(client, taskId) {
  let cursor;
  let pages = 0;
  for (;;) {
    const page = await client.experimental.tasks.listTasks(cursor);
    pages += 1;
    const task = page.tasks.find((t) => t.taskId === taskId);
    if (task) return { found: true, pages, task };
    cursor = page.nextCursor;
    if (!cursor) return { found: false, pages, task: null };
  }
}

/** An answer or the error it raised, as plain JSON. */
async function attempt(call) {
  try {
    return { result: await call() };
  } catch (error) {
    return { error: wireError(error) };
  }
}

async function cancelWhenRunning(client, task) {
  if (out.cancel !== null || task.status !== "working") return;
  // A poll saw it working; two progress notifications say a worker is running the job.
  if (!(await until(() => out.progress.length >= 2, 30000))) throw new Error("no progress within 30 s");
  out.cancel = await client.experimental.tasks.cancelTask(task.taskId);
}

/** The task as the second Client sees it (`across-*`), through the second replica. */
async function fromAnotherReplica(taskId) {
  const { client, transport } = connectable(secondUrl);
  await client.connect(transport);
  const tasks = client.experimental.tasks;
  const other = { get: await tasks.getTask(taskId), listed: await findListed(client, taskId) };
  if (mode === "across-result") {
    other.result = await attempt(() => tasks.getTaskResult(taskId, CallToolResultSchema));
    other.after = await tasks.getTask(taskId);
  } else {
    // Two updates after its creation (the job's start, a report) say a worker runs it.
    const updates = new Set();
    for (let seen = other.get; updates.size < 2 && seen.status === "working"; seen = await tasks.getTask(taskId)) {
      if (seen.lastUpdatedAt !== seen.createdAt) updates.add(seen.lastUpdatedAt);
      if (updates.size < 2) await sleep(Math.min(Math.max(seen.pollInterval ?? 250, 50), 1000));
    }
    other.cancel = await attempt(() => tasks.cancelTask(taskId));
    other.afterCancel = await tasks.getTask(taskId);
    other.cancelAgain = await attempt(() => tasks.cancelTask(taskId));
    other.resultAfterCancel = await attempt(() => tasks.getTaskResult(taskId, CallToolResultSchema));
  }
  await client.close();
  return other;
}

const first = connectable(url);
try {
  try {
    recordNotifications(first.client);
    await first.client.connect(first.transport);
  } catch (error) {
    out.error = `connect failed: ${describe(error)}`;
    clearTimeout(deadline);
    process.exit(finish(1));
  }
  const { client, transport } = first;
  const tasks = client.experimental.tasks;
  out.protocolVersion = transport.protocolVersion ?? null;
  out.tasksCapability = client.getServerCapabilities()?.tasks ?? null;
  const listing = await client.listTools(); // also lets callToolStream check structuredContent
  out.taskSupport = listing.tools.find((t) => t.name === tool)?.execution?.taskSupport ?? null;
  out.standalone = await until(() => first.standalone, 10000);

  const stream = tasks.callToolStream({ name: tool, arguments: toolArgs }, CallToolResultSchema, {
    task: { ttl },
    onprogress,
    timeout: timeoutMs,
  });
  for await (const message of stream) {
    recordMessage(message);
    if (message.type === "taskCreated") {
      out.taskId = message.task.taskId;
      if (mode === "list") out.listed = await findListed(client, out.taskId);
      if (mode.startsWith("across")) break; // leave: the other replica takes it from here
    }
    if (mode === "cancel" && message.type === "taskStatus") await cancelWhenRunning(client, message.task);
  }

  if (mode.startsWith("across")) {
    if (out.taskId === null) throw new Error("no task was created");
    await transport.terminateSession();
    await client.close();
    out.other = await fromAnotherReplica(out.taskId);
  } else {
    if (out.taskId !== null && out.streamError !== null) {
      out.taskResult = await attempt(() => tasks.getTaskResult(out.taskId, CallToolResultSchema));
    }
    if (mode === "cancel" && out.taskId !== null) {
      out.afterCancel = await tasks.getTask(out.taskId);
      const again = await attempt(() => tasks.cancelTask(out.taskId));
      out.cancelAgain = again.error ?? { task: again.result };
    }
    if (out.taskId !== null) {
      const ended = () => out.notifications.some((n) => n.taskId === out.taskId && TERMINAL.includes(n.status));
      await until(ended, 10000);
    }
  }
  out.ok = true;
} catch (error) {
  out.ok = false;
  out.error = describe(error);
} finally {
  await first.client.close().catch(() => {});
  clearTimeout(deadline);
}
finish(0);
