// Official clients with automatic reconnect (delays 0, 2, 10, 30 s) through signalr-edge while
// the test kills an instance.
// Usage: node reconnect.mjs <edge base URL> <clients per transport>
// Starts the clients, prints {"started":N,"instances":{...}} once all are connected, then reads
// one line from stdin: the name of the instance the test killed. Waits (at most 40 s) until
// every client is connected again, checks each with echo and whoami, prints one JSON line per
// transport and exits non-zero on any failure.
import * as signalR from "@microsoft/signalr";
import * as readline from "node:readline";

const base = process.argv[2];
const perTransport = Number(process.argv[3] ?? 1);
const transports = {
  WebSockets: signalR.HttpTransportType.WebSockets,
  ServerSentEvents: signalR.HttpTransportType.ServerSentEvents,
  LongPolling: signalR.HttpTransportType.LongPolling,
};

const count = (names) => {
  const by = {};
  for (const n of names) by[n] = (by[n] ?? 0) + 1;
  return by;
};

const clients = [];
for (const [transport, type] of Object.entries(transports)) {
  for (let i = 0; i < perTransport; i++) {
    const conn = new signalR.HubConnectionBuilder()
      .withUrl(`${base}/chat`, { transport: type })
      .withAutomaticReconnect()
      .configureLogging(signalR.LogLevel.None)
      .build();
    const c = { transport, conn, before: null, reconnectedAfterMs: null, closed: false };
    conn.onreconnected(() => {
      if (killedAt) c.reconnectedAfterMs = Date.now() - killedAt;
    });
    conn.onclose(() => (c.closed = true));
    clients.push(c);
  }
}
let killedAt = null;

await Promise.all(
  clients.map(async (c) => {
    await c.conn.start();
    c.before = (await c.conn.invoke("whoami")).instance;
  }),
);
console.log(JSON.stringify({ started: clients.length, instances: count(clients.map((c) => c.before)) }));

const killed = await new Promise((resolve) => {
  const rl = readline.createInterface({ input: process.stdin });
  rl.once("line", (line) => {
    rl.close();
    resolve(line.trim());
  });
});
killedAt = Date.now();

// Every client on the killed instance reconnects (through the app server's negotiate, which
// skips it); the others never notice.
const deadline = Date.now() + 40_000;
const settled = () =>
  clients.every((c) => c.closed || (c.conn.state === signalR.HubConnectionState.Connected && (c.before !== killed || c.reconnectedAfterMs !== null)));
while (!settled() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));

let failed = 0;
for (const transport of Object.keys(transports)) {
  const mine = clients.filter((c) => c.transport === transport);
  const errors = [];
  const after = [];
  const reconnectMs = [];
  for (const c of mine) {
    try {
      if (c.closed) throw new Error("closed for good");
      if (c.before === killed && c.reconnectedAfterMs === null) throw new Error("never reconnected");
      if ((await c.conn.invoke("echo", "again")) !== "again") throw new Error("bad echo");
      const who = await c.conn.invoke("whoami");
      if (who.instance === killed) throw new Error(`still on ${killed}`);
      after.push(who.instance);
      if (c.reconnectedAfterMs !== null) reconnectMs.push(c.reconnectedAfterMs);
    } catch (e) {
      errors.push(String(e));
    }
  }
  failed += errors.length;
  console.log(
    JSON.stringify({
      transport,
      ok: after.length,
      errors: errors.slice(0, 3),
      reconnected: reconnectMs.length,
      maxReconnectMs: Math.max(0, ...reconnectMs),
      before: count(mine.map((c) => c.before)),
      after: count(after),
    }),
  );
}
await Promise.allSettled(clients.map((c) => c.conn.stop()));
process.exit(failed ? 1 : 0);
