// Answers a job's questions (elicitation, sampling, roots) with the official TypeScript MCP SDK,
// for the end-to-end tests (run by tests/test_ts_client.py).
//
// usage: node ask.mjs <sdk: v1|v2> <capabilities: all|none> <calls-json> <url | stdio> [command args...]
//   v1:   @modelcontextprotocol/sdk 1.x, which speaks 2025-11-25: the server asks with standalone
//         server-to-client requests (elicitation/create, sampling/createMessage, roots/list) on
//         the call's stream, and the client's request handlers answer them.
//   v2:   @modelcontextprotocol/client 2.x pinned to 2026-07-28: the call ends with an
//         input_required result, the client fulfils its inputRequests through the SAME request
//         handlers and re-sends tools/call with inputResponses and the echoed requestState.
//   all:  declare {elicitation: {}, sampling: {}, roots: {}} and register the three handlers;
//   none: declare nothing and register no handler (the server must not ask such a client).
//   calls-json: [{"tool": name, "arguments": {...}}, ...], called one after the other.
//   stdio: spawn `command args...` as the server (with this process's environment) instead of HTTP.
//
// Prints JSON lines on stdout:
//   {"connected": {"sdk", "protocolVersion"}}
//   then one per call: {"tool", "ok", "isError", "text", "error": {code, message, data} | null,
//                       "answered": [methods the handlers answered during the call],
//                       "wire": {"serverRequests": [methods of server-to-client requests],
//                                "inputRequired": [inputRequests keys of each input_required result],
//                                "resent": count of tools/call re-sent with inputResponses,
//                                "errors": [{code, message}] of JSON-RPC error responses}}
// Exit codes: 0 when every call ran (call errors are reported in the JSON), 1 on a crash, 2 usage.
const [sdk, capabilityMode, callsJson, target, ...command] = process.argv.slice(2);
if (!["v1", "v2"].includes(sdk) || !["all", "none"].includes(capabilityMode) || callsJson === undefined || !target) {
  console.error("usage: node ask.mjs <v1|v2> <all|none> <calls-json> <url | stdio> [command args...]");
  process.exit(2);
}
const MODERN = "2026-07-28";
const ROOT = "file:///tmp/ts-root";
const CLIENT_INFO = { name: "mcp-jobs-ts-ask-test", version: "1.0.0" };
const capabilities = capabilityMode === "all" ? { elicitation: {}, sampling: {}, roots: {} } : {};

/** The accepted content for a form: strings "Alice" (a field named color "blue"), booleans true. */
function formContent(schema) {
  const content = {};
  for (const [name, property] of Object.entries(schema?.properties ?? {})) {
    if (property.type === "string") content[name] = name === "color" ? "blue" : "Alice";
    else if (property.type === "boolean") content[name] = true;
  }
  return content;
}

let answered = [];
const handlers = {
  "elicitation/create": (request) => {
    answered.push("elicitation/create");
    return { action: "accept", content: formContent(request.params.requestedSchema) };
  },
  "sampling/createMessage": () => {
    answered.push("sampling/createMessage");
    return { role: "assistant", content: { type: "text", text: "Paris" }, model: "ts-test-model", stopReason: "endTurn" };
  },
  "roots/list": () => {
    answered.push("roots/list");
    return { roots: [{ uri: ROOT, name: "ts-root" }] };
  },
};

/** The SDK's pieces: v1 registers handlers by request schema, v2 by method name. */
async function load() {
  if (sdk === "v1") {
    const { Client } = await import("@modelcontextprotocol/sdk/client/index.js");
    const { StreamableHTTPClientTransport } = await import("@modelcontextprotocol/sdk/client/streamableHttp.js");
    const { StdioClientTransport } = await import("@modelcontextprotocol/sdk/client/stdio.js");
    const types = await import("@modelcontextprotocol/sdk/types.js");
    const schemas = {
      "elicitation/create": types.ElicitRequestSchema,
      "sampling/createMessage": types.CreateMessageRequestSchema,
      "roots/list": types.ListRootsRequestSchema,
    };
    const client = new Client(CLIENT_INFO, { capabilities });
    const register = (method, handler) => client.setRequestHandler(schemas[method], handler);
    return { client, register, StreamableHTTPClientTransport, StdioClientTransport };
  }
  const { Client, StreamableHTTPClientTransport } = await import("@modelcontextprotocol/client");
  const { StdioClientTransport } = await import("@modelcontextprotocol/client/stdio");
  const client = new Client(CLIENT_INFO, { capabilities, versionNegotiation: { mode: { pin: MODERN } } });
  const register = (method, handler) => client.setRequestHandler(method, handler);
  return { client, register, StreamableHTTPClientTransport, StdioClientTransport };
}

// ---- the wire: what the client really sent and received, per call ----
let wire = { serverRequests: [], inputRequired: [], resent: 0, errors: [] };
let initializeResult;
function received(message) {
  if (message?.method !== undefined && message.id !== undefined) wire.serverRequests.push(message.method);
  if (message?.result?.resultType === "input_required") wire.inputRequired.push(Object.keys(message.result.inputRequests ?? {}).sort());
  if (message?.result?.protocolVersion !== undefined && message.result.serverInfo !== undefined) initializeResult = message.result;
  if (message?.error !== undefined && message.id !== undefined) wire.errors.push({ code: message.error.code, message: message.error.message });
}
function sent(message) {
  if (message?.method === "tools/call" && message.params?.inputResponses !== undefined) wire.resent += 1;
}
/** Record every message through the transport: wrap send, and whatever onmessage the client installs. */
function tap(transport) {
  const send = transport.send.bind(transport);
  transport.send = (message, options) => {
    sent(message);
    return send(message, options);
  };
  let onmessage;
  Object.defineProperty(transport, "onmessage", {
    configurable: true,
    get: () => onmessage,
    set: (handler) => {
      onmessage =
        handler &&
        ((message, extra) => {
          received(message);
          return handler(message, extra);
        });
    },
  });
  return transport;
}

function describeError(error) {
  return { code: error?.code ?? null, message: String(error?.message ?? error), data: error?.data ?? null };
}

async function call(client, { tool, arguments: args }) {
  answered = [];
  wire = { serverRequests: [], inputRequired: [], resent: 0, errors: [] };
  const out = { tool, ok: false, isError: null, text: null, error: null };
  try {
    const params = { name: tool, arguments: args ?? {} };
    const options = { timeout: 60_000 };
    // v1's second parameter is a result schema (undefined: the default one), v2's the options.
    const result = await (sdk === "v1" ? client.callTool(params, undefined, options) : client.callTool(params, options));
    Object.assign(out, { ok: !result.isError, isError: Boolean(result.isError), text: (result.content ?? []).map((c) => c.text ?? "").join("") });
  } catch (error) {
    out.error = describeError(error);
  }
  return { ...out, answered, wire };
}

try {
  const calls = JSON.parse(callsJson);
  const { client, register, StreamableHTTPClientTransport, StdioClientTransport } = await load();
  if (capabilityMode === "all") for (const [method, handler] of Object.entries(handlers)) register(method, handler);
  const transport =
    target === "stdio"
      ? new StdioClientTransport({ command: command[0], args: command.slice(1), env: { ...process.env }, stderr: "inherit" })
      : new StreamableHTTPClientTransport(new URL(target));
  await client.connect(tap(transport));
  const protocolVersion = client.getNegotiatedProtocolVersion?.() ?? initializeResult?.protocolVersion ?? null;
  console.log(JSON.stringify({ connected: { sdk, protocolVersion } }));
  for (const one of calls) console.log(JSON.stringify(await call(client, one)));
  await client.close();
} catch (error) {
  console.error(error);
  process.exit(1);
}
