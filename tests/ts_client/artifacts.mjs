// Reads a job's artifact back with the official TypeScript MCP SDK, from a DIFFERENT server replica
// than the one that ran the call, for the end-to-end tests (run by tests/test_ts_artifacts.py).
//
// usage: node artifacts.mjs <sdk: v1|v2> <url-a> <url-b> <token> <other-token> [megabytes] [name]
//   v1: @modelcontextprotocol/sdk 1.x, which speaks 2025-11-25;
//   v2: @modelcontextprotocol/client 2.x pinned to 2026-07-28.
//   1. connect to url-a with `Authorization: Bearer <token>` (the transport's requestInit.headers,
//      the way a user passes a bearer token), call make_file {megabytes, name} (default 20,
//      "big.bin"), and take the resource_link block of its result;
//   2. connect a second client to url-b with the same token, resources/read the link's URI and
//      decode the content (a blob is base64, a text is UTF-8);
//   3. connect a third client to url-b with <other-token> and resources/read the same URI, which
//      must be refused; on v1 also resources/subscribe to the job's URI, which must be refused too
//      (2026-07-28 has no resources/subscribe: its subscriptions go by subscriptions/listen).
//
// Prints one JSON object on stdout:
//   {sdk, protocolVersions: {a, b, other},
//    call: {isError, jsonSize: bytes of the result's JSON, types: [content block types]},
//    link: the resource_link block, as received,
//    read: {contents, uri, mimeType, kind: "blob"|"text", length: decoded bytes, sha256: hex},
//    foreign: {read: {code, message, data} | null, subscribe: {code, message, data} | null | "skipped"},
//    error: a crash's description | null}
// A refusal that did not happen is null (the test fails on it); a call that succeeded but should
// not is reported as {code: null, message: "succeeded"}.
// Exit codes: 0 when the flow ran (refusals included in the JSON), 1 on a crash, 2 usage.
//
// Size limits met on the way (a 20 MB file is ~28 MB of base64 in one JSON-RPC response):
// neither SDK caps the SSE event it parses (both use eventsource-parser's EventSourceParserStream
// without its `maxBufferSize`) nor a JSON body, so nothing needs raising there; the request
// timeout (60 s by default, `timeout` in the request options) is raised below for slow machines.
import { createHash } from "node:crypto";

const [sdk, urlA, urlB, token, otherToken, megabytesArg, nameArg] = process.argv.slice(2);
if (!["v1", "v2"].includes(sdk) || !urlA || !urlB || !token || !otherToken) {
  console.error("usage: node artifacts.mjs <v1|v2> <url-a> <url-b> <token> <other-token> [megabytes] [name]");
  process.exit(2);
}
const MODERN = "2026-07-28";
const CLIENT_INFO = { name: "mcp-jobs-ts-artifacts-test", version: "1.0.0" };
const REQUEST = { timeout: 180_000 };
const megabytes = megabytesArg === undefined ? 20 : Number(megabytesArg);
const fileName = nameArg ?? "big.bin";

/** The SDK's Client and HTTP transport classes. */
async function load() {
  if (sdk === "v1") {
    const { Client } = await import("@modelcontextprotocol/sdk/client/index.js");
    const { StreamableHTTPClientTransport } = await import("@modelcontextprotocol/sdk/client/streamableHttp.js");
    return { Client, StreamableHTTPClientTransport };
  }
  return import("@modelcontextprotocol/client");
}

/** A connected client of `url` as the caller `bearer` names; and the protocol version it speaks. */
async function connect({ Client, StreamableHTTPClientTransport }, url, bearer) {
  const options = sdk === "v1" ? { capabilities: {} } : { capabilities: {}, versionNegotiation: { mode: { pin: MODERN } } };
  const client = new Client(CLIENT_INFO, options);
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${bearer}` } } });
  await client.connect(transport);
  // v1 has no getter on the client: its transport keeps the version it sends as a header.
  const protocolVersion = client.getNegotiatedProtocolVersion?.() ?? transport.protocolVersion ?? null;
  return { client, protocolVersion };
}

function describeError(error) {
  return { code: error?.code ?? null, message: String(error?.message ?? error), data: error?.data ?? null };
}

/** The error a request that must be refused got (or a note that it was not refused). */
async function refusal(request) {
  try {
    await request();
    return { code: null, message: "succeeded", data: null };
  } catch (error) {
    return describeError(error);
  }
}

function decoded(content) {
  if (typeof content.blob === "string") return { kind: "blob", bytes: Buffer.from(content.blob, "base64") };
  return { kind: "text", bytes: Buffer.from(content.text ?? "", "utf8") };
}

const out = { sdk, protocolVersions: {}, call: null, link: null, read: null, foreign: { read: null, subscribe: null }, error: null };
const clients = [];
try {
  const sdkParts = await load();
  const first = await connect(sdkParts, urlA, token);
  clients.push(first.client);
  out.protocolVersions.a = first.protocolVersion;
  const params = { name: "make_file", arguments: { megabytes, name: fileName } };
  // v1's second parameter is a result schema (undefined: the default one), v2's the options.
  const result = await (sdk === "v1" ? first.client.callTool(params, undefined, REQUEST) : first.client.callTool(params, REQUEST));
  out.call = { isError: Boolean(result.isError), jsonSize: Buffer.byteLength(JSON.stringify(result)), types: (result.content ?? []).map((c) => c.type) };
  out.link = (result.content ?? []).find((c) => c.type === "resource_link") ?? null;
  if (out.link === null) throw new Error(`no resource_link in the result: ${JSON.stringify(result).slice(0, 500)}`);

  const second = await connect(sdkParts, urlB, token);
  clients.push(second.client);
  out.protocolVersions.b = second.protocolVersion;
  const read = await second.client.readResource({ uri: out.link.uri }, REQUEST);
  const [content] = read.contents;
  const { kind, bytes } = decoded(content);
  out.read = {
    contents: read.contents.length,
    uri: content.uri,
    mimeType: content.mimeType ?? null,
    kind,
    length: bytes.length,
    sha256: createHash("sha256").update(bytes).digest("hex"),
  };

  const other = await connect(sdkParts, urlB, otherToken);
  clients.push(other.client);
  out.protocolVersions.other = other.protocolVersion;
  out.foreign.read = await refusal(() => other.client.readResource({ uri: out.link.uri }, REQUEST));
  const jobUri = out.link.uri.split("/artifacts/")[0];
  out.foreign.subscribe = sdk === "v1" ? await refusal(() => other.client.subscribeResource({ uri: jobUri }, REQUEST)) : "skipped";
} catch (error) {
  out.error = `${error?.name ?? "Error"}: ${error?.message ?? error}`;
  process.exitCode = 1;
} finally {
  for (const client of clients) await client.close().catch(() => {});
}
console.log(JSON.stringify(out));
