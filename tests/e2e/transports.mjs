// Drives the official @microsoft/signalr client through signalr-edge over each transport.
// Usage: node transports.mjs <edge base URL> [clients per transport] [no-request-id]
// TRANSPORTS=WebSockets,LongPolling (environment) runs only those.
// Prints one JSON line per transport and exits non-zero on any failure.
import * as signalR from "@microsoft/signalr";

const base = process.argv[2];
const perTransport = Number(process.argv[3] ?? 1);
// "no-request-id": the app server omits asrs_request_id (serverless shape); a successful
// connect still proves negotiate and connect met on one instance (another would answer 404).
const expectRequestId = process.argv[4] !== "no-request-id";
const transports = {
  WebSockets: signalR.HttpTransportType.WebSockets,
  ServerSentEvents: signalR.HttpTransportType.ServerSentEvents,
  LongPolling: signalR.HttpTransportType.LongPolling,
};

async function oneClient(transport) {
  const conn = new signalR.HubConnectionBuilder()
    .withUrl(`${base}/chat`, { transport })
    .configureLogging(signalR.LogLevel.Error)
    .build();
  const received = new Promise((resolve) => conn.on("broadcast", resolve));
  await conn.start();
  try {
    const echo = await conn.invoke("echo", "hello");
    if (echo !== "hello") throw new Error(`echo returned ${JSON.stringify(echo)}`);
    const who = await conn.invoke("whoami");
    const token = Math.random().toString(36).slice(2);
    await conn.invoke("broadcast", token);
    const got = await Promise.race([received, new Promise((_, rej) => setTimeout(() => rej(new Error("no broadcast")), 5000))]);
    if (got !== token && typeof got !== "string") throw new Error("bad broadcast");
    return who;
  } finally {
    await conn.stop();
  }
}

const only = process.env.TRANSPORTS ? process.env.TRANSPORTS.split(",") : Object.keys(transports);
let failed = 0;
for (const [name, transport] of Object.entries(transports).filter(([n]) => only.includes(n))) {
  const results = await Promise.allSettled(Array.from({ length: perTransport }, () => oneClient(transport)));
  const errors = results.filter((r) => r.status === "rejected").map((r) => String(r.reason));
  const whos = results.filter((r) => r.status === "fulfilled").map((r) => r.value);
  const mismatched = whos.filter(
    (w) => w.requestIdAtNegotiate !== w.requestIdAtConnect || !w.requestIdAtNegotiate !== !expectRequestId,
  ).length;
  const instances = {};
  for (const w of whos) instances[w.instance] = (instances[w.instance] ?? 0) + 1;
  failed += errors.length + mismatched;
  console.log(JSON.stringify({ transport: name, ok: whos.length, errors: errors.slice(0, 3), mismatched, instances }));
}
process.exit(failed ? 1 : 0);
