// A steady load of official @microsoft/signalr clients through signalr-edge, for fault tests.
// Usage: node steady.mjs <edge base URL> <long-lived clients per transport> <max seconds>
//
// Per transport (WebSockets, SSE, long polling) it keeps <n> clients connected, each invoking
// `echo` every 250 ms, with automatic reconnect (0, 250, 500 ms, then every second for 30 s;
// every attempt renegotiates through the app server), and opens fresh short connections one
// after another (start, echo, stop). It prints one JSON line per event, `at` in Unix ms:
//   {"ev":"ready"}                      all long-lived clients connected
//   {"ev":"down"|"up"|"closed", ...}    a long-lived client lost, regained or gave up its connection
//   {"ev":"fresh_fail", ...}            a fresh connection failed (start or echo)
//   {"ev":"summary", ...}               counts per transport, on "stop" (stdin) or at <max seconds>
// It exits non-zero only when it could not get ready.
import * as signalR from "@microsoft/signalr";
import * as readline from "node:readline";

const base = process.argv[2];
const perTransport = Number(process.argv[3] ?? 3);
const maxSeconds = Number(process.argv[4] ?? 60);
const transports = {
  WebSockets: signalR.HttpTransportType.WebSockets,
  ServerSentEvents: signalR.HttpTransportType.ServerSentEvents,
  LongPolling: signalR.HttpTransportType.LongPolling,
};
const retryDelays = [0, 250, 500];
const reconnectPolicy = {
  nextRetryDelayInMilliseconds: (ctx) =>
    ctx.elapsedMilliseconds > 30000 ? null : retryDelays[ctx.previousRetryCount] ?? 1000,
};

let stopping = false;
const emit = (o) => console.log(JSON.stringify({ at: Date.now(), ...o }));
const short = (e) => String(e?.message ?? e).slice(0, 200);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function build(transport, reconnect) {
  let b = new signalR.HubConnectionBuilder()
    .withUrl(`${base}/chat`, { transport })
    .configureLogging(signalR.LogLevel.None);
  if (reconnect) b = b.withAutomaticReconnect(reconnectPolicy);
  const conn = b.build();
  // Clients echo every 250 ms, so 3 s of silence means the instance stopped answering.
  conn.serverTimeoutInMilliseconds = 3000;
  conn.keepAliveIntervalInMilliseconds = 1000;
  return conn;
}

function newStats() {
  return { fresh_ok: 0, fresh_fail: 0, long: 0, downs: 0, ups: 0, closed: 0, echo_fail: 0 };
}
const stats = Object.fromEntries(Object.keys(transports).map((t) => [t, newStats()]));

async function longLived(name, transport, id) {
  const s = stats[name];
  const conn = build(transport, true);
  conn.onreconnecting((e) => {
    s.downs++;
    emit({ ev: "down", transport: name, id, error: short(e) });
  });
  conn.onreconnected(async () => {
    s.ups++;
    const who = await conn.invoke("whoami").catch(() => null);
    emit({ ev: "up", transport: name, id, instance: who?.instance });
  });
  conn.onclose((e) => {
    if (stopping) return;
    s.closed++;
    emit({ ev: "closed", transport: name, id, error: short(e) });
  });
  await conn.start();
  const who = await conn.invoke("whoami");
  s.long++;
  (async () => {
    while (!stopping) {
      await sleep(250);
      if (conn.state !== signalR.HubConnectionState.Connected) continue;
      await conn.invoke("echo", "x").catch(() => s.echo_fail++);
    }
  })();
  return { conn, instance: who.instance };
}

async function fresh(name, transport) {
  const s = stats[name];
  while (!stopping) {
    const conn = build(transport, false);
    try {
      await conn.start();
      if ((await conn.invoke("echo", "f")) !== "f") throw new Error("bad echo");
      s.fresh_ok++;
    } catch (e) {
      if (!stopping) {
        s.fresh_fail++;
        emit({ ev: "fresh_fail", transport: name, error: short(e) });
      }
    } finally {
      await conn.stop().catch(() => {});
    }
    await sleep(20);
  }
}

const clients = [];
try {
  for (const [name, transport] of Object.entries(transports)) {
    for (let i = 0; i < perTransport; i++) clients.push(longLived(name, transport, i));
  }
  const placed = await Promise.all(clients);
  const instances = {};
  for (const p of placed) instances[p.instance] = (instances[p.instance] ?? 0) + 1;
  emit({ ev: "ready", instances });
  const loops = Object.entries(transports).map(([n, t]) => fresh(n, t));
  const done = new Promise((resolve) => {
    readline.createInterface({ input: process.stdin }).on("line", (l) => l.trim() === "stop" && resolve());
    setTimeout(resolve, maxSeconds * 1000);
  });
  await done;
  stopping = true;
  await Promise.all(loops);
  const connected = placed.filter((p) => p.conn.state === signalR.HubConnectionState.Connected).length;
  emit({ ev: "summary", connected, transports: stats });
  await Promise.all(placed.map((p) => p.conn.stop().catch(() => {})));
  process.exit(0);
} catch (e) {
  emit({ ev: "failed", error: short(e) });
  process.exit(1);
}
