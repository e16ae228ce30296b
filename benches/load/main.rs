//! Load harness: signalr-edge side by side with nginx, HAProxy and the upstream itself.
//!
//! `cargo bench --bench load [-- --rounds N --only negotiate,echo --targets edge,nginx]` runs every
//! scenario against every installed system, A B A B over the rounds, and writes
//! `target/bench-report/report.md` with SVG charts. Under `cargo test` (no `--bench`) it runs a
//! small smoke pass of every scenario instead and fails on any failed request or connection.

mod clients;
mod procfs;
mod report;
mod targets;
mod upstream;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clients::{Client, Outcome};
use report::{Metric, Sample};
use targets::Kind;

/// Counts and durations of one mode.
#[derive(Clone, Copy)]
struct Sizes {
    rounds: usize,
    run: Duration,
    warmup: Duration,
    negotiate_conns: usize,
    storm_clients: usize,
    storm_concurrency: usize,
    echo_conns: usize,
    idle_conns: usize,
    idle_settle: Duration,
    push_each: usize,
    push_tick: Duration,
}

const FULL: Sizes = Sizes {
    rounds: 3,
    run: Duration::from_secs(5),
    warmup: Duration::from_millis(500),
    negotiate_conns: 50,
    storm_clients: 5000,
    storm_concurrency: 200,
    echo_conns: 100,
    idle_conns: 9000,
    idle_settle: Duration::from_secs(2),
    push_each: 500,
    push_tick: Duration::from_millis(250),
};

const SMOKE: Sizes = Sizes {
    rounds: 1,
    run: Duration::from_millis(500),
    warmup: Duration::from_millis(100),
    negotiate_conns: 8,
    storm_clients: 50,
    storm_concurrency: 10,
    echo_conns: 10,
    idle_conns: 100,
    idle_settle: Duration::from_millis(200),
    push_each: 10,
    push_tick: Duration::from_millis(100),
};

/// Bytes each WebSocket of the `active` scenario sends (and gets back) before it idles.
const ACTIVE_BYTES: usize = 50_000;

/// The scenarios, in report order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    NegotiateLatency,
    NegotiateKeepAlive,
    NegotiateNewConn,
    ConnectStorm,
    Echo,
    Idle,
    Active,
    Push,
}

impl Scenario {
    const ALL: [Scenario; 8] = [
        Scenario::NegotiateLatency,
        Scenario::NegotiateKeepAlive,
        Scenario::NegotiateNewConn,
        Scenario::ConnectStorm,
        Scenario::Echo,
        Scenario::Idle,
        Scenario::Active,
        Scenario::Push,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::NegotiateLatency => "negotiate-latency",
            Scenario::NegotiateKeepAlive => "negotiate-keepalive",
            Scenario::NegotiateNewConn => "negotiate-new-conn",
            Scenario::ConnectStorm => "connect-storm",
            Scenario::Echo => "echo",
            Scenario::Idle => "idle",
            Scenario::Active => "active",
            Scenario::Push => "sse-longpoll",
        }
    }

    fn describe(self, s: &Sizes) -> String {
        match self {
            Scenario::NegotiateLatency => format!(
                "One client sends negotiates one after another on one keep-alive connection for {:?}: the latency the system adds, without queueing.",
                s.run
            ),
            Scenario::NegotiateKeepAlive => format!(
                "POST /client/negotiate with a bearer token and a random asrs_request_id, {} keep-alive connections in a closed loop for {:?}.",
                s.negotiate_conns, s.run
            ),
            Scenario::NegotiateNewConn => format!(
                "The same negotiate, each request on a new connection (`Connection: close`), {} at a time for {:?}.",
                s.negotiate_conns, s.run
            ),
            Scenario::ConnectStorm => format!(
                "{} clients negotiate and then open a WebSocket with the returned id, {} at a time, as fast as possible; all stay open until the last one is up.",
                s.storm_clients, s.storm_concurrency
            ),
            Scenario::Echo => format!(
                "{} WebSockets each send a {}-byte invocation record and wait for its echo, in a closed loop for {:?}; a message is one round trip.",
                s.echo_conns, 101, s.run
            ),
            Scenario::Idle => format!(
                "{} WebSockets opened through the system (one echo each, like a SignalR handshake), then held idle for {:?}: memory per connection from the proxy's RSS.",
                s.idle_conns, s.idle_settle
            ),
            Scenario::Active => format!(
                "{} WebSockets that each first send and get back {} KB in 1 KiB echo messages, then are held idle for {:?}: memory per connection that has been in use.",
                s.idle_conns, ACTIVE_BYTES / 1000, s.idle_settle
            ),
            Scenario::Push => format!(
                "{} SSE streams and {} long-poll loops; the upstream pushes a timestamped message to each every {:?}, for {:?}: delivery latency from send to receipt.",
                s.push_each, s.push_each, s.push_tick, s.run
            ),
        }
    }
}

/// A token the size and shape of the SDK's, naming no pool endpoint (so the edge decodes it,
/// as its default rules do, then hashes the request id like the peers).
fn token() -> String {
    asrs_emulator::token::sign(
        "an-access-key-of-the-usual-length-0123456789abcdef",
        &asrs_emulator::token::audience("other.service.signalr.net", "chat"),
        Some("user-1"),
        Duration::from_secs(3600),
    )
}

struct Options {
    sizes: Sizes,
    scenarios: Vec<Scenario>,
    kinds: Vec<Kind>,
    out: PathBuf,
    smoke: bool,
}

fn options() -> Result<Options, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let smoke = !args.iter().any(|a| a == "--bench");
    let mut o = Options {
        sizes: if smoke { SMOKE } else { FULL },
        scenarios: Scenario::ALL.to_vec(),
        kinds: Kind::ALL.to_vec(),
        out: Path::new(env!("CARGO_MANIFEST_DIR")).join(if smoke {
            "target/bench-report-smoke"
        } else {
            "target/bench-report"
        }),
        smoke,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--rounds" => o.sizes.rounds = value()?.parse().map_err(|_| "--rounds: a number")?,
            "--seconds" => {
                o.sizes.run =
                    Duration::from_secs_f64(value()?.parse().map_err(|_| "--seconds: a number")?)
            }
            "--only" => {
                let v = value()?;
                o.scenarios = Scenario::ALL
                    .into_iter()
                    .filter(|s| v.split(',').any(|n| s.name().starts_with(n)))
                    .collect();
            }
            "--targets" => {
                let v = value()?;
                o.kinds = Kind::ALL
                    .into_iter()
                    .filter(|k| v.split(',').any(|n| k.name().contains(n)))
                    .collect();
            }
            "--out" => {
                let cwd = std::env::current_dir().map_err(|e| e.to_string())?;
                o.out = cwd.join(value()?);
            }
            _ => {} // cargo's own flags (--bench, filters)
        }
    }
    Ok(o)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("upstream") {
        let count = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(3);
        let tick = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(250);
        upstream::run(count, Duration::from_millis(tick));
    }
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("load: {e}");
            std::process::exit(2);
        }
    };
    let nofile = procfs::raise_nofile();
    // Proxies get core 0; the generator and the upstream share core 1.
    let cpus = procfs::cpus();
    let (proxy_cpu, rest_cpu) = if cpus >= 2 {
        (Some(0), Some(1))
    } else {
        (None, None)
    };
    if let Some(cpu) = rest_cpu {
        procfs::pin_self(cpu);
    }
    let mut notes = vec![format!(
        "{cpus} CPUs; open-file limit {nofile}; proxy pinned to {}, generator and upstream to {}.",
        proxy_cpu.map_or("any core".into(), |c| format!("core {c}")),
        rest_cpu.map_or("any core".into(), |c| format!("core {c}")),
    )];
    let mut kinds = Vec::new();
    for k in &o.kinds {
        match k.missing() {
            Some(why) => {
                println!("{why}");
                notes.push(why);
            }
            None => kinds.push(*k),
        }
    }
    let work = o.out.join("work");
    let _ = std::fs::create_dir_all(&work);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    let mut samples = Vec::new();
    let mut failures = 0;
    let started = Instant::now();
    for &scenario in &o.scenarios {
        for round in 1..=o.sizes.rounds {
            for &kind in &kinds {
                let s = local.block_on(
                    &rt,
                    measure(scenario, kind, round, &o.sizes, proxy_cpu, rest_cpu, &work),
                );
                match s {
                    Ok(s) => {
                        println!("{}", s.line());
                        failures += s.failures;
                        samples.push(s);
                    }
                    Err(e) => {
                        println!("{} {} round {round}: {e}", scenario.name(), kind.name());
                        notes.push(format!(
                            "{} {} round {round} did not run: {e}",
                            scenario.name(),
                            kind.name()
                        ));
                        failures += 1;
                    }
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    notes.push(format!(
        "Total wall time {:.0} s.",
        started.elapsed().as_secs_f64()
    ));
    let described: Vec<(String, String)> = o
        .scenarios
        .iter()
        .map(|s| (s.name().to_string(), s.describe(&o.sizes)))
        .collect();
    match report::write(&o.out, &described, &kinds, &samples, &notes, o.sizes.rounds) {
        Ok(path) => println!("report: {}", path.display()),
        Err(e) => eprintln!("report: {e}"),
    }
    if o.smoke && failures > 0 {
        eprintln!("load smoke run: {failures} failures");
        std::process::exit(1);
    }
}

/// Runs one scenario once against a fresh system and upstream.
async fn measure(
    scenario: Scenario,
    kind: Kind,
    round: usize,
    s: &Sizes,
    proxy_cpu: Option<usize>,
    rest_cpu: Option<usize>,
    work: &Path,
) -> Result<Sample, String> {
    let up = upstream::Upstream::start(3, s.push_tick, rest_cpu)?;
    let target = targets::start(kind, &up.addrs, proxy_cpu, work)?;
    let client = Client {
        addr: target.addr,
        host: if kind == Kind::Direct {
            upstream::HOST.to_string()
        } else {
            "edge.example.com".to_string()
        },
        token: token(),
    };
    ready(&client)
        .await
        .map_err(|e| format!("{e}\n{}", target.log()))?;
    if matches!(
        scenario,
        Scenario::NegotiateKeepAlive | Scenario::NegotiateNewConn
    ) {
        clients::negotiate(&client, s.negotiate_conns, s.warmup, false).await;
    }
    let pids = (target.pid(), up.pid(), std::process::id());
    let cpu = |pid: Option<u32>| pid.map_or(0.0, procfs::cpu_seconds);
    let before = (cpu(pids.0), cpu(Some(pids.1)), cpu(Some(pids.2)));
    let rss_before = pids.0.map_or(0, procfs::rss_kib);
    let t0 = Instant::now();
    let mut metrics = Vec::new();
    let (outcome, units): (Outcome, f64) = match scenario {
        Scenario::NegotiateLatency | Scenario::NegotiateKeepAlive | Scenario::NegotiateNewConn => {
            let new_conn = scenario == Scenario::NegotiateNewConn;
            let conns = if scenario == Scenario::NegotiateLatency {
                1
            } else {
                s.negotiate_conns
            };
            let out = clients::negotiate(&client, conns, s.run, new_conn).await;
            let secs = out.elapsed.as_secs_f64();
            metrics.push(Metric::new("req/s", out.ok as f64 / secs, true));
            latency(&mut metrics, &out.hist, "");
            let n = out.ok as f64;
            (out, n)
        }
        Scenario::ConnectStorm => {
            let (out, held) =
                clients::connect_storm(&client, s.storm_clients, s.storm_concurrency).await;
            metrics.push(Metric::new(
                "conn/s",
                out.ok as f64 / out.elapsed.as_secs_f64(),
                true,
            ));
            metrics.push(Metric::new("p99 µs", q(&out.hist, 0.99), false));
            drop(held);
            let n = out.ok as f64;
            (out, n)
        }
        Scenario::Echo => {
            let out = clients::echo(&client, s.echo_conns, s.run).await;
            metrics.push(Metric::new(
                "msg/s",
                out.ok as f64 / out.elapsed.as_secs_f64(),
                true,
            ));
            latency(&mut metrics, &out.hist, "RTT ");
            let n = out.ok as f64;
            (out, n)
        }
        Scenario::Idle | Scenario::Active => {
            let traffic = if scenario == Scenario::Active {
                ACTIVE_BYTES
            } else {
                0
            };
            let (out, held) =
                clients::open_held(&client, s.idle_conns, s.storm_concurrency, traffic).await;
            tokio::time::sleep(s.idle_settle).await;
            let rss_after = pids.0.map_or(0, procfs::rss_kib);
            metrics.push(Metric::new("conns", held.len() as f64, true));
            if pids.0.is_some() && !held.is_empty() {
                let per = rss_after.saturating_sub(rss_before) as f64 / held.len() as f64;
                metrics.push(Metric::new("proxy KB/conn", per, false));
                metrics.push(Metric::new(
                    "proxy RSS MB",
                    rss_after as f64 / 1024.0,
                    false,
                ));
            }
            drop(held);
            (out, 0.0)
        }
        Scenario::Push => {
            let (sse, lp) = clients::push(&client, s.push_each, s.push_each, s.run).await;
            let secs = sse.elapsed.as_secs_f64();
            metrics.push(Metric::new("SSE msg/s", sse.ok as f64 / secs, true));
            metrics.push(Metric::new("SSE p99 µs", q(&sse.hist, 0.99), false));
            metrics.push(Metric::new("LP msg/s", lp.ok as f64 / secs, true));
            metrics.push(Metric::new("LP p99 µs", q(&lp.hist, 0.99), false));
            let mut out = sse;
            out.merge(lp);
            let n = out.ok as f64;
            (out, n)
        }
    };
    let wall = t0.elapsed().as_secs_f64();
    let after = (cpu(pids.0), cpu(Some(pids.1)), cpu(Some(pids.2)));
    if pids.0.is_some() && units > 0.0 {
        let unit = match scenario {
            Scenario::NegotiateLatency
            | Scenario::NegotiateKeepAlive
            | Scenario::NegotiateNewConn => "req",
            Scenario::ConnectStorm => "conn",
            _ => "msg",
        };
        metrics.push(Metric::new(
            &format!("proxy CPU µs/{unit}"),
            (after.0 - before.0) * 1e6 / units,
            false,
        ));
    }
    if pids.0.is_some() {
        metrics.push(Metric::new(
            "proxy CPU %",
            (after.0 - before.0) * 100.0 / wall,
            false,
        ));
    }
    metrics.push(Metric::new(
        "upstream CPU %",
        (after.1 - before.1) * 100.0 / wall,
        false,
    ));
    metrics.push(Metric::new(
        "generator CPU %",
        (after.2 - before.2) * 100.0 / wall,
        false,
    ));
    Ok(Sample {
        scenario: scenario.name().to_string(),
        kind,
        round,
        metrics,
        failures: outcome.failed,
        first_error: outcome.first_error,
        // Generator and upstream share one core: near 100 % means they set the pace.
        core_busy: ((after.1 - before.1) + (after.2 - before.2)) / wall,
    })
}

fn q(h: &hdrhistogram::Histogram<u64>, quantile: f64) -> f64 {
    h.value_at_quantile(quantile) as f64
}

fn latency(metrics: &mut Vec<Metric>, h: &hdrhistogram::Histogram<u64>, prefix: &str) {
    metrics.push(Metric::new(&format!("{prefix}p50 µs"), q(h, 0.5), false));
    metrics.push(Metric::new(&format!("{prefix}p99 µs"), q(h, 0.99), false));
    metrics.push(Metric::new(
        &format!("{prefix}p99.9 µs"),
        q(h, 0.999),
        false,
    ));
}

/// Polls with single negotiates until one succeeds (the system and its upstream are up).
async fn ready(client: &Client) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = clients::negotiate(client, 1, Duration::from_millis(1), false).await;
        if out.ok > 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "not ready after 15 s: {}",
                out.first_error.unwrap_or_default()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
