//! Zero-downtime operations under load: live reloads (good and broken files), binary upgrades
//! with the listener hand-off, and the drain. Everything runs on 127.0.0.1, bounded in time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use asrs_emulator::{Emulator, InstanceConfig};
use testkit::*;
use tokio::sync::{watch, RwLock};

const WS_SESSIONS: usize = 200;
const SSE_SESSIONS: usize = 10;
const LP_SESSIONS: usize = 10;
const SESSIONS: usize = WS_SESSIONS + SSE_SESSIONS + LP_SESSIONS;
/// Time between two echoes of one session.
const PERIOD: Duration = Duration::from_millis(500);
/// The drain deadline of the processes that hold their connections to the end.
const DEADLINE: u64 = 3;

/// An emulated instance the "app server" may sign tokens for.
#[derive(Clone)]
struct Inst {
    name: String,
    key: String,
}

impl Inst {
    fn token(&self) -> String {
        token(
            &self.key,
            &format!("{}.service.signalr.net", self.name),
            "chat",
        )
    }
}

/// A connection that the server side ended.
#[derive(Debug, Clone)]
struct Dropped {
    session: usize,
    at: Instant,
    last_echo: Instant,
    error: String,
}

#[derive(Default)]
struct Stats {
    echoes: AtomicU64,
    negotiates: AtomicU64,
    connects: AtomicU64,
    connected: AtomicUsize,
    failures: Mutex<Vec<String>>,
    drops: Mutex<Vec<Dropped>>,
    last_echo: Mutex<HashMap<usize, Instant>>,
    instance: Mutex<HashMap<usize, String>>,
}

/// When the test started, to date failures.
static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn since_start(t: Instant) -> f64 {
    t.saturating_duration_since(*T0.get_or_init(Instant::now))
        .as_secs_f64()
}

impl Stats {
    fn fail(&self, what: String) {
        let at = since_start(Instant::now());
        self.failures
            .lock()
            .unwrap()
            .push(format!("at {at:.2}s: {what}"));
    }

    fn failures(&self) -> Vec<String> {
        self.failures.lock().unwrap().clone()
    }

    fn drops(&self) -> Vec<Dropped> {
        self.drops.lock().unwrap().clone()
    }

    /// True when every session has echoed since `t`.
    fn all_echoed_since(&self, t: Instant) -> bool {
        let last = self.last_echo.lock().unwrap();
        last.len() == SESSIONS && last.values().all(|&e| e > t)
    }
}

/// The steady load: sessions over the three transports and negotiate loops.
struct Load {
    stats: Arc<Stats>,
    stop: watch::Sender<bool>,
    rotate: watch::Sender<u64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(base: &str, allowed: &Arc<RwLock<Vec<Inst>>>) -> Load {
        let stats = Arc::new(Stats::default());
        let (stop, _) = watch::channel(false);
        let (rotate, _) = watch::channel(0u64);
        // No total timeout: SSE responses last as long as their connection.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..SESSIONS {
            let transport = if i < WS_SESSIONS {
                Transport::WebSockets
            } else if i < WS_SESSIONS + SSE_SESSIONS {
                Transport::ServerSentEvents
            } else {
                Transport::LongPolling
            };
            tasks.push(tokio::spawn(session(
                i,
                transport,
                base.to_string(),
                allowed.clone(),
                stats.clone(),
                stop.subscribe(),
                rotate.subscribe(),
                http.clone(),
            )));
        }
        // One loop reuses keep-alive connections, the other opens one per request.
        let fresh = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        for (k, client) in [http, fresh].into_iter().enumerate() {
            tasks.push(tokio::spawn(negotiate_loop(
                k,
                base.to_string(),
                allowed.clone(),
                stats.clone(),
                stop.subscribe(),
                client,
            )));
        }
        Load {
            stats,
            stop,
            rotate,
            tasks,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
    }
}

/// The instance a new connection gets a token for, and its token; holds the app server's lock
/// while negotiating, so a test that takes the write lock knows no negotiation with the old
/// instance list is still on its way.
async fn negotiate_as(
    http: &reqwest::Client,
    base: &str,
    allowed: &RwLock<Vec<Inst>>,
    pick: usize,
    request_id: String,
) -> (Inst, Target, Result<(String, String), Error>) {
    let list = allowed.read().await;
    let inst = list[pick % list.len()].clone();
    let target = Target {
        base: base.to_string(),
        token: inst.token(),
        request_id,
    };
    let negotiated = target.negotiate(http).await;
    drop(list);
    (inst, target, negotiated)
}

#[allow(clippy::too_many_arguments)]
async fn session(
    i: usize,
    transport: Transport,
    base: String,
    allowed: Arc<RwLock<Vec<Inst>>>,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
    mut rotate: watch::Receiver<u64>,
    http: reqwest::Client,
) {
    let mut n = 0u64;
    let mut attempt = 0;
    'connect: while !*stop.borrow() {
        attempt += 1;
        let (inst, target, negotiated) =
            negotiate_as(&http, &base, &allowed, i, format!("s{i}a{attempt}")).await;
        let opened = match negotiated {
            Ok((instance, id)) if instance == inst.name => {
                Client::open(&http, &target, transport, &id).await
            }
            Ok((instance, _)) => Err(Error::Failed(format!(
                "negotiate for {} answered by {instance}",
                inst.name
            ))),
            Err(e) => Err(e),
        };
        let mut client = match opened {
            Ok(c) => c,
            Err(e) => {
                stats.fail(format!("session {i} ({transport:?}) connect: {e}"));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        stats.connects.fetch_add(1, Ordering::Relaxed);
        stats.connected.fetch_add(1, Ordering::Relaxed);
        stats.instance.lock().unwrap().insert(i, inst.name.clone());
        rotate.mark_unchanged();
        let mut last_echo = Instant::now();
        // Spread the echoes of different sessions over the period.
        let mut next = tokio::time::Instant::now() + PERIOD.mul_f64((i % 50) as f64 / 50.0);
        loop {
            let server_side = async {
                if client.is_streaming() {
                    client.next_records().await.map(|_| ())
                } else {
                    std::future::pending().await
                }
            };
            let ended = tokio::select! {
                _ = stop.changed() => Some(None),
                _ = rotate.changed() => Some(None),
                r = server_side => r.err().map(Some),
                _ = tokio::time::sleep_until(next) => None,
            };
            match ended {
                None => {}
                Some(None) => {
                    // The test asked: close from the client side and connect again.
                    stats.connected.fetch_sub(1, Ordering::Relaxed);
                    client.close().await;
                    continue 'connect;
                }
                Some(Some(e)) => {
                    stats.connected.fetch_sub(1, Ordering::Relaxed);
                    record_end(&stats, i, transport, last_echo, e);
                    continue 'connect;
                }
            }
            if tokio::time::Instant::now() < next {
                continue; // a ping or other record arrived
            }
            next += PERIOD;
            n += 1;
            match client.echo(n).await {
                Ok(()) => {
                    last_echo = Instant::now();
                    stats.echoes.fetch_add(1, Ordering::Relaxed);
                    stats.last_echo.lock().unwrap().insert(i, last_echo);
                }
                Err(e) => {
                    stats.connected.fetch_sub(1, Ordering::Relaxed);
                    record_end(&stats, i, transport, last_echo, e);
                    continue 'connect;
                }
            }
        }
    }
}

fn record_end(stats: &Stats, i: usize, transport: Transport, last_echo: Instant, e: Error) {
    match e {
        Error::Closed(error) => stats.drops.lock().unwrap().push(Dropped {
            session: i,
            at: Instant::now(),
            last_echo,
            error,
        }),
        Error::Failed(e) => stats.fail(format!("session {i} ({transport:?}): {e}")),
    }
}

async fn negotiate_loop(
    k: usize,
    base: String,
    allowed: Arc<RwLock<Vec<Inst>>>,
    stats: Arc<Stats>,
    stop: watch::Receiver<bool>,
    http: reqwest::Client,
) {
    let mut n = 0;
    while !*stop.borrow() {
        n += 1;
        let (inst, _, negotiated) =
            negotiate_as(&http, &base, &allowed, n, format!("n{k}x{n}")).await;
        match negotiated {
            Ok((instance, _)) if instance == inst.name => {
                stats.negotiates.fetch_add(1, Ordering::Relaxed);
            }
            Ok((instance, _)) => stats.fail(format!(
                "negotiate loop {k}: token for {} answered by {instance}",
                inst.name
            )),
            Err(e) => stats.fail(format!("negotiate loop {k}: {e}")),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Pools and routes: with instance c and an `/api/` route, or without both.
fn body(em: &Emulator, with_c: bool) -> EdgeConfig {
    // Generous probe timeouts: a probe slowed down by a busy machine must not take an instance
    // out (its clients' tokens are valid there only).
    let interval = Duration::from_secs(if with_c { 1 } else { 2 });
    let mut pool = Pool::signalr("signalr").health_check(
        HealthCheck::new()
            .interval(interval)
            .timeout(Duration::from_secs(3))
            .unhealthy_threshold(3),
    );
    for i in &em.instances {
        if i.state.settings.name == "c" && !with_c {
            continue;
        }
        pool = pool.endpoint(endpoint_of(i));
    }
    let config = EdgeConfig::new()
        .pool(pool)
        .route(Route::new("/client/", "signalr"));
    if with_c {
        config.route(Route::new("/api/", "signalr"))
    } else {
        config
    }
}

/// What new connections see: whether `/api/` is routed, and the status of a negotiate with a
/// token for c and the instance that answered it.
async fn observe(site: &EdgeSite, c: &Inst, id: &str) -> (u16, u16, String) {
    let api = http()
        .get(site.url("/api/health"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    let target = Target {
        base: site.url(""),
        token: c.token(),
        request_id: id.to_string(),
    };
    let r = http()
        .post(format!(
            "{}/client/negotiate?hub=chat&negotiateVersion=1&asrs_request_id={id}",
            target.base
        ))
        .bearer_auth(&target.token)
        .send()
        .await
        .unwrap();
    let instance = r
        .headers()
        .get("x-emulator-instance")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (api, r.status().as_u16(), instance)
}

/// Polls `/status` until `done` says so (10 s at most).
async fn wait_status(
    site: &EdgeSite,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = site.status().await;
        if done(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "status never got there: {status}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Warning and error lines of every process of the site, for failure messages.
fn warnings(site: &EdgeSite) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&site.dir.0).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            out.extend(
                text.lines()
                    .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
                    .map(|l| format!("{}: {l}", path.display())),
            );
        }
    }
    out
}

async fn wait_all_echoing(stats: &Stats, since: Instant, what: &str) {
    wait_for(Duration::from_secs(20), what, || {
        stats.all_echoed_since(since).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_and_upgrades_under_load_lose_nothing() {
    let started = *T0.get_or_init(Instant::now);
    let em = emulator(vec![
        instance("a", "key-a", true),
        instance("b", "key-b", true),
        instance("c", "key-c", true),
    ])
    .await;
    let inst = |name: &str| Inst {
        name: name.to_string(),
        key: format!("key-{name}"),
    };
    let c = inst("c");
    let with_c = body(&em, true);
    let without_c = body(&em, false);
    let site = EdgeSite::new();
    site.write(&with_c, DEADLINE);
    let mut current = site.spawn("edge0", false);
    site.wait_ready(&mut current).await;
    let allowed = Arc::new(RwLock::new(vec![inst("a"), inst("b"), inst("c")]));
    let load = Load::start(&site.url(""), &allowed);
    let stats = load.stats.clone();
    let t0 = Instant::now();
    wait_all_echoing(&stats, t0, "all sessions connected and echoing").await;
    let on_c = stats
        .instance
        .lock()
        .unwrap()
        .values()
        .filter(|n| *n == "c")
        .count();
    assert!(on_c > 30, "sessions on c: {on_c}");
    println!(
        "{SESSIONS} sessions echoing after {:.1}s ({on_c} on c)",
        t0.elapsed().as_secs_f64()
    );

    // 1. Twenty reloads, alternating: without c and /api/, then with them again.
    let t1 = Instant::now();
    for k in 0..20 {
        let remove = k % 2 == 0;
        if remove {
            // As an operator would: the app server stops sending clients to c first.
            allowed.write().await.retain(|i| i.name != "c");
            site.write(&without_c, DEADLINE);
        } else {
            site.write(&with_c, DEADLINE);
        }
        if k % 4 < 2 {
            let (code, report) = site.reload().await;
            assert_eq!(code, 200, "{report}");
            assert_eq!(report["generation"], k + 2, "{report}");
        } else {
            send_signal(current.pid(), "HUP");
            let status = wait_status(&site, |s| s["generation"] == k + 2).await;
            assert_eq!(status["last_reload"]["trigger"], "SIGHUP", "{status}");
        }
        let (api, status, instance) = observe(&site, &c, &format!("probe{k}")).await;
        if remove {
            assert_eq!(api, 404, "reload {k}: /api/ is gone");
            // A new connection with a token for the retired c cannot succeed anywhere: the
            // edge says so (503, negotiate again) instead of sending it to a or b.
            assert_eq!(
                (status, instance.as_str()),
                (503, ""),
                "reload {k}: c is gone"
            );
        } else {
            assert_eq!(api, 200, "reload {k}: /api/ is back");
            assert_eq!(
                (status, instance.as_str()),
                (200, "c"),
                "reload {k}: c is back"
            );
            allowed.write().await.push(inst("c"));
        }
        // Let the load run across each generation.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let t_reloaded = Instant::now();
    wait_all_echoing(&stats, t_reloaded, "every session echoes after the reloads").await;
    assert_eq!(
        stats.failures(),
        Vec::<String>::new(),
        "failed requests during reloads"
    );
    assert!(
        stats.drops().is_empty(),
        "dropped during reloads: {:?}",
        stats.drops()
    );
    let status = site.status().await;
    assert_eq!(status["reloads"]["ok"], 20, "{status}");
    assert_eq!(status["generation"], 21, "{status}");
    let log = current.log();
    assert!(
        log.contains("rule=retired"),
        "long polls of c's connections reach retired c"
    );
    assert!(log.contains("endpoints -signalr/c.service.signalr.net"));
    assert!(log.contains("endpoints +signalr/c.service.signalr.net"));
    assert!(log.contains("routes -/api/ -> signalr"));
    println!(
        "20 reloads in {:.1}s: 0 failed, 0 dropped, {} echoes, {} negotiates so far",
        (t_reloaded - t1).as_secs_f64(),
        stats.echoes.load(Ordering::Relaxed),
        stats.negotiates.load(Ordering::Relaxed)
    );

    // 2. Five kinds of broken file: nothing changes, every error is reported. The first two
    // are not what the config builder writes: they stay text.
    let good = site.text(&with_c, DEADLINE);
    let mut ghost_route = with_c.clone();
    ghost_route.routes[0].pool = "ghost".into();
    let mut missing_ca = with_c.clone();
    let pool = missing_ca.pool_mut("signalr");
    *pool = pool
        .clone()
        .ca_file(std::path::Path::new("/nonexistent/ca.pem"));
    let other_listener = with_c.clone().listener(Listener::new("127.0.0.1:1"));
    let broken = [
        ("syntax", "pools: [\n".to_string(), ""),
        (
            "unknown key",
            // The builder writes a pool's keys 4 spaces in.
            good.replacen("kind: signalr", "kind: signalr\n    endpointz: []", 1),
            "pools.signalr.endpointz",
        ),
        (
            "unknown pool",
            site.text(&ghost_route, DEADLINE),
            "routes[0].pool",
        ),
        (
            "missing CA file",
            site.text(&missing_ca, DEADLINE),
            "pools.signalr.tls.ca_file",
        ),
        (
            "listener change",
            site.text(&other_listener, DEADLINE),
            "listeners[0].address",
        ),
    ];
    let conf = site.conf().display().to_string();
    for (k, (what, text, path)) in broken.iter().enumerate() {
        std::fs::write(site.conf(), text).unwrap();
        let (code, report) = site.reload().await;
        assert_eq!(code, 422, "{what}: {report}");
        let error = report["error"].as_str().unwrap();
        assert!(
            error.starts_with(&conf) && error.contains(path),
            "{what}: {error}"
        );
        assert_eq!(report["generation"], 21, "{what}");
        let status = site.status().await;
        assert_eq!(status["reloads"]["failed"], k + 1, "{what}");
        assert_eq!(status["generation"], 21, "{what}");
        assert_eq!(
            observe(&site, &c, &format!("broken{k}")).await,
            (200, 200, "c".to_string()),
            "{what}: the old config keeps serving"
        );
    }
    assert!(site.reload().await.1["error"]
        .as_str()
        .unwrap()
        .contains("need a binary upgrade"));
    // A broken file by SIGHUP is logged.
    std::fs::write(site.conf(), "pools: [\n").unwrap();
    send_signal(current.pid(), "HUP");
    current
        .wait_log(
            "reload (SIGHUP) failed; generation 21 keeps serving",
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(stats.failures(), Vec::<String>::new());
    assert!(stats.drops().is_empty(), "{:?}", stats.drops());

    // 3. Three binary upgrades. The second new process gets a long deadline: the third
    // upgrade shows that it exits as soon as its connections are gone.
    let mut windows = Vec::new();
    let mut last_stop = Instant::now();
    for k in 0..3 {
        let grace = if k == 1 { 30 } else { DEADLINE };
        site.write(&with_c, grace);
        let mut next = site.spawn(&format!("edge{}", k + 1), true);
        send_signal(current.pid(), "QUIT");
        next.wait_log("took over listening sockets", Duration::from_secs(20))
            .await;
        current
            .wait_log("drain: stopped accepting", Duration::from_secs(10))
            .await;
        let stopped = Instant::now();
        last_stop = stopped;
        if k < 2 {
            let exited = current.wait_exit(Duration::from_secs(DEADLINE + 5)).await;
            let held = exited - stopped;
            // `stopped` is when this test saw the line (it polls, and the machine may be
            // busy), so it can be late; exiting at the deadline is what the log line says.
            // The bound only catches an exit long before it.
            assert!(
                held >= Duration::from_millis(DEADLINE * 1000 - 1000),
                "upgrade {k}: the old process kept its connections only {held:?}"
            );
            assert!(current.log().contains("drain: deadline reached"));
            windows.push((stopped, exited));
            println!(
                "upgrade {k}: old process held its connections {:.2}s (deadline {DEADLINE}s)",
                held.as_secs_f64()
            );
        } else {
            // The clients leave the old process (a deploy that moves them, or just their end).
            // Wait until it closed its idle keep-alive connections first: a request sent on
            // one at that very moment would meet the usual HTTP/1.1 keep-alive race.
            current
                .wait_log(
                    "drain: idle keep-alive connections closed",
                    Duration::from_secs(5),
                )
                .await;
            load.rotate.send_modify(|r| *r += 1);
            let rotated = Instant::now();
            let exited = current.wait_exit(Duration::from_secs(10)).await;
            assert!(current.log().contains("drain: no connections left"));
            println!(
                "upgrade {k}: old process exited {:.2}s after its clients left (deadline 30s)",
                (exited - rotated).as_secs_f64()
            );
        }
        let t = Instant::now();
        wait_all_echoing(&stats, t, "every session echoes on the new process").await;
        current = next;
    }
    let status = site.status().await;
    assert_eq!(status["started_by_upgrade"], true, "{status}");
    load.stop().await;

    // No request failed; connections ended only when an old process hit its deadline, and
    // they exchanged messages until then.
    let drains: Vec<(f64, f64)> = windows
        .iter()
        .map(|(s, e)| (since_start(*s), since_start(*e)))
        .collect();
    assert_eq!(
        stats.failures(),
        Vec::<String>::new(),
        "failed requests (drains at {drains:?}, upgrade 2 at {:.2}s); edge warnings: {:#?}",
        since_start(last_stop),
        warnings(&site)
    );
    let drops = stats.drops();
    for d in &drops {
        let window = windows.iter().find(|(stop, exit)| {
            d.at + Duration::from_millis(500) >= *stop + Duration::from_secs(DEADLINE)
                && d.at <= *exit + Duration::from_millis(1500)
        });
        let (stop, _) = window.unwrap_or_else(|| {
            let rel = |t: Instant| t.saturating_duration_since(started).as_secs_f64();
            let w: Vec<(f64, f64)> = windows.iter().map(|(s, e)| (rel(*s), rel(*e))).collect();
            panic!(
                "dropped outside a drain deadline at {:.2}s (last echo {:.2}s; drains {w:?}): {d:?}",
                rel(d.at),
                rel(d.last_echo)
            )
        });
        assert!(
            d.last_echo + Duration::from_millis(1500) >= *stop + Duration::from_secs(DEADLINE),
            "session {} stopped exchanging {:?} before the deadline",
            d.session,
            (*stop + Duration::from_secs(DEADLINE)).saturating_duration_since(d.last_echo)
        );
    }
    for (k, (stop, exit)) in windows.iter().enumerate() {
        let n = drops
            .iter()
            .filter(|d| {
                d.at + Duration::from_secs(1) >= *stop && d.at <= *exit + Duration::from_secs(1)
            })
            .count();
        assert_eq!(
            n,
            WS_SESSIONS + SSE_SESSIONS,
            "upgrade {k}: every streaming connection was held to the deadline"
        );
    }
    let mut kinds: Vec<&str> = drops.iter().map(|d| d.error.as_str()).collect();
    kinds.sort();
    kinds.dedup();
    println!("how the held connections ended: {kinds:?}");
    println!(
        "done in {:.1}s: {} echoes, {} negotiates, {} connects, {} connections closed at drain deadlines, 0 failed",
        started.elapsed().as_secs_f64(),
        stats.echoes.load(Ordering::Relaxed),
        stats.negotiates.load(Ordering::Relaxed),
        stats.connects.load(Ordering::Relaxed),
        drops.len()
    );
}

/// A site in front of one emulated instance, with `/client/` and `/api/` routed to it; the
/// config it wrote (without the site's own settings), for tests that change it.
async fn small_site(grace: u64) -> (Emulator, EdgeSite, EdgeConfig) {
    let em = emulator(vec![instance("a", "key-a", true)]).await;
    let site = EdgeSite::new();
    let config = EdgeConfig::new()
        .pool(signalr_pool(&em))
        .route(Route::new("/client/", "signalr"))
        .route(Route::new("/api/", "signalr"));
    site.write(&config, grace);
    (em, site, config)
}

fn target_a(site: &EdgeSite, id: &str) -> Target {
    Target {
        base: site.url(""),
        token: token("key-a", "a.service.signalr.net", "chat"),
        request_id: id.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readyz_off_and_exits_once_the_last_connection_ends() {
    let (_em, site, _) = small_site(30).await;
    let mut edge = site.spawn("edge", false);
    site.wait_ready(&mut edge).await;
    let (mut ws, _) = Client::connect(&http(), &target_a(&site, "t1"), Transport::WebSockets)
        .await
        .unwrap();
    ws.echo(1).await.unwrap();
    send_signal(edge.pid(), "TERM");
    edge.wait_log(
        "drain: stopped accepting; 1 connections open",
        Duration::from_secs(10),
    )
    .await;
    let r = http().get(site.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.text().await.unwrap(), "draining\n");
    let status = site.status().await;
    assert_eq!(status["phase"], "stopping");
    assert!(status["refusals"]["no_route"].is_u64(), "{status}");
    // The established WebSocket keeps working while the process drains.
    for n in 2..5 {
        ws.echo(n).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    edge.assert_running();
    let closed = Instant::now();
    ws.close().await;
    edge.wait_exit(Duration::from_secs(5)).await;
    assert!(
        closed.elapsed() < Duration::from_secs(3),
        "exits once idle, not at the 30 s deadline"
    );
    assert!(edge.log().contains("drain: no connections left"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigquit_without_a_new_process_keeps_serving() {
    let (_em, site, _) = small_site(30).await;
    let mut edge = site.spawn("edge", false);
    site.wait_ready(&mut edge).await;
    send_signal(edge.pid(), "QUIT");
    edge.wait_log("this process keeps serving", Duration::from_secs(20))
        .await;
    let status = site.status().await;
    assert_eq!(status["upgrades"]["failed"], 1, "{status}");
    assert_eq!(status["ready"], true, "{status}");
    let (code, _) = site.reload().await;
    assert_eq!(code, 200);
    let r = http().get(site.url("/api/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (mut ws, _) = Client::connect(&http(), &target_a(&site, "q1"), Transport::WebSockets)
        .await
        .unwrap();
    ws.echo(1).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_certificate_rotates_on_reload() {
    let (_em, site, config) = small_site(0).await;
    let (one, two) = (site.dir.0.join("one"), site.dir.0.join("two"));
    std::fs::create_dir_all(&one).unwrap();
    std::fs::create_dir_all(&two).unwrap();
    let TestPki {
        ca: ca1,
        cert: cert1,
        key: key1,
    } = test_pki(&one, "edge.test");
    let TestPki {
        ca: ca2,
        cert: cert2,
        key: key2,
    } = test_pki(&two, "edge.test");
    let (cert, key) = (site.dir.0.join("edge.crt"), site.dir.0.join("edge.key"));
    std::fs::copy(&cert1, &cert).unwrap();
    std::fs::copy(&key1, &key).unwrap();
    site.write(&config.listener(site.listener().tls(&cert, &key)), 0);
    let mut edge = site.spawn("edge", false);
    site.wait_ready(&mut edge).await;
    let trusting = |ca: &std::path::Path| {
        reqwest::Client::builder()
            .add_root_certificate(testkit::certs::root_certificate(ca))
            .resolve("edge.test", ([127, 0, 0, 1], site.port).into())
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    };
    let url = format!("https://edge.test:{}/api/health", site.port);
    let old_client = trusting(&ca1);
    assert_eq!(old_client.get(&url).send().await.unwrap().status(), 200);
    assert!(trusting(&ca2).get(&url).send().await.is_err());
    // Rotate by replacing the files in place and reloading.
    std::fs::copy(&cert2, &cert).unwrap();
    std::fs::copy(&key2, &key).unwrap();
    let (code, report) = site.reload().await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["changes"]["certificates_changed"][0], "listeners[0]");
    // New handshakes get the new certificate; the established connection goes on.
    assert_eq!(trusting(&ca2).get(&url).send().await.unwrap().status(), 200);
    assert!(trusting(&ca1).get(&url).send().await.is_err());
    assert_eq!(old_client.get(&url).send().await.unwrap().status(), 200);
    // A key that does not match the certificate is refused, and the edge keeps serving.
    std::fs::copy(&key1, &key).unwrap();
    let (code, report) = site.reload().await;
    assert_eq!(code, 422, "{report}");
    assert!(report["error"]
        .as_str()
        .unwrap()
        .contains("listeners[0].tls"));
    assert_eq!(trusting(&ca2).get(&url).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_ca_file_is_not_served_by_connections_the_old_one_verified() {
    let host = "a.service.signalr.net";
    let site = EdgeSite::new();
    let (one, two) = (site.dir.0.join("ca1"), site.dir.0.join("ca2"));
    std::fs::create_dir_all(&one).unwrap();
    std::fs::create_dir_all(&two).unwrap();
    let signed = test_pki(&one, host);
    let other_ca = test_pki(&two, host).ca;
    let mut inst = instance("a", "key-a", true);
    inst.tls = Some(asrs_emulator::TlsFiles {
        cert: signed.cert.clone(),
        key: signed.key.clone(),
    });
    let em = emulator(vec![inst]).await;
    let config = |ca: &std::path::Path| {
        EdgeConfig::new()
            .pool(
                Pool::signalr("signalr")
                    .endpoint(
                        Endpoint::connection_string(format!(
                            "Endpoint=https://{host};AccessKey=key-a;Version=1.0;"
                        ))
                        .address(addr_of(&em, 0)),
                    )
                    .ca_file(ca),
            )
            .route(Route::new("/client/", "signalr"))
    };
    site.write(&config(&signed.ca), 0);
    let mut edge = site.spawn("edge", false);
    site.wait_ready(&mut edge).await;
    let t = token("key-a", host, "chat");
    let negotiate_status = |id: &str| {
        let q = format!("hub=chat&negotiateVersion=1&asrs_request_id={id}");
        let (base, t) = (site.url(""), t.clone());
        async move { negotiate(&http(), &base, &q, &t).await.status }
    };
    // Verified under the CA that signed the instance; the connection stays pooled.
    assert_eq!(negotiate_status("c1").await, 200);
    assert_eq!(negotiate_status("c2").await, 200);
    // The pool now trusts only a CA that did not sign it: the pooled connection, verified
    // under the old bundle, must not carry the next request.
    site.write(&config(&other_ca), 0);
    let (code, report) = site.reload().await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["changes"]["pools_changed"][0], "signalr", "{report}");
    assert_eq!(negotiate_status("c3").await, 503);
    assert_eq!(em.instances[0].state.negotiations(), 2);
    // And back: trusted again.
    site.write(&config(&signed.ca), 0);
    assert_eq!(site.reload().await.0, 200);
    assert_eq!(negotiate_status("c4").await, 200);
}

/// Kills the daemon named in a pid file when dropped (the test's processes are not children).
struct DaemonGuard(std::path::PathBuf);

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            if let Ok(pid) = pid.trim().parse::<u32>() {
                let _ = std::process::Command::new("kill")
                    .args(["-INT", &pid.to_string()])
                    .status();
            }
        }
    }
}

fn read_pid(file: &std::path::Path) -> Option<u32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_script_replaces_a_daemon() {
    let (_em, site, config) = small_site(DEADLINE).await;
    let dir = site.dir.0.clone();
    site.write(&config.error_log(&dir.join("daemon.log")), DEADLINE);
    let pid_file = dir.join("edge.pid");
    let _guard = DaemonGuard(pid_file.clone());
    let bin = edge_binary();
    let out = std::fs::File::create(dir.join("start.out")).unwrap();
    let started = std::process::Command::new(&bin)
        .args(["-d", "-c"])
        .arg(site.conf())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .status()
        .unwrap();
    assert!(started.success());
    let old = wait_for(Duration::from_secs(20), "daemon pid", || {
        read_pid(&pid_file)
    })
    .await;
    wait_for(Duration::from_secs(20), "daemon ready", || {
        std::net::TcpStream::connect(("127.0.0.1", site.port)).ok()
    })
    .await;
    // Requests on fresh connections all through the upgrade.
    let (stop, stopped) = watch::channel(false);
    let url = site.url("/api/health");
    let requests = tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let (mut ok, mut failed) = (0, Vec::new());
        while !*stopped.borrow() {
            match client.get(&url).send().await {
                Ok(r) if r.status() == 200 => ok += 1,
                Ok(r) => failed.push(r.status().to_string()),
                Err(e) => failed.push(format!("{e:?}")),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (ok, failed)
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/upgrade.sh");
    let log = dir.join("upgrade.out");
    let out = std::fs::File::create(&log).unwrap();
    let upgraded = tokio::task::spawn_blocking({
        let (conf, pid_file, admin) = (site.conf(), pid_file.clone(), site.admin_url(""));
        move || {
            std::process::Command::new("bash")
                .arg(script)
                .arg("-b")
                .arg(bin)
                .args(["-w", "20", "-a", &admin, "-c"])
                .arg(conf)
                .arg("-p")
                .arg(pid_file)
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .status()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let output = std::fs::read_to_string(&log).unwrap();
    assert!(upgraded.success(), "{output}");
    let new = read_pid(&pid_file).unwrap();
    assert_ne!(new, old);
    assert!(!alive(old), "{output}");
    assert!(alive(new), "{output}");
    assert!(output.contains("drained and exited"), "{output}");
    let _ = stop.send(true);
    let (ok, failed) = requests.await.unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(ok > 20, "{ok}");
    let status = site.status().await;
    assert_eq!(status["pid"], new, "{status}");
    assert_eq!(status["started_by_upgrade"], true, "{status}");
    println!("upgrade script: {ok} requests on fresh connections, none failed\n{output}");
}

/// Negotiate/connect pairs in front of instances that all accept one token (a shared key,
/// audiences not checked), chosen by request id alone.
struct PairStorm {
    /// Pairs that connected and echoed.
    ok: AtomicUsize,
    /// Connects (or a transport's later requests) answered 404: the pair was split.
    not_found: AtomicUsize,
    /// Anything else that failed.
    other: Mutex<Vec<String>>,
}

impl PairStorm {
    fn new() -> Arc<PairStorm> {
        Arc::new(PairStorm {
            ok: AtomicUsize::new(0),
            not_found: AtomicUsize::new(0),
            other: Mutex::new(Vec::new()),
        })
    }

    fn record(&self, what: &str, r: Result<(), Error>) {
        match r {
            Ok(()) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if e.to_string().contains("404") => {
                self.not_found.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.other.lock().unwrap().push(format!("{what}: {e}")),
        }
    }
}

/// The connect of a negotiated pair over `transport`, one echo, and the client's close (a
/// `DELETE` for long polling): the connect and the transport's later requests.
async fn connect_pair(
    http: &reqwest::Client,
    target: &Target,
    transport: Transport,
    id: &str,
) -> Result<(), Error> {
    let mut client = Client::open(http, target, transport, id).await?;
    client.echo(1).await?;
    client.close().await;
    Ok(())
}

fn transport_of(i: usize) -> Transport {
    [
        Transport::WebSockets,
        Transport::ServerSentEvents,
        Transport::LongPolling,
    ][i % 3]
}

/// Pairs whose negotiate runs before the reload and whose connect runs after it.
const STRADDLING_PAIRS: usize = 90;
/// Storm loops that negotiate and connect without pause across the reload.
const STORM_LOOPS: usize = 4;

/// Runs the storm against a fresh edge over instances a and b, reloading to add c while
/// `STRADDLING_PAIRS` pairs wait between negotiate and connect: what became of the straddling
/// pairs, of the storm's pairs, and the edge's log.
async fn pair_storm(em: &Emulator, arm: &str, pinning: bool) -> (PairStorm, PairStorm, String) {
    let pool = |with_c: bool| {
        let mut pool = Pool::signalr("signalr").affinity(&["request_id"]);
        if !pinning {
            pool = pool.pinning(Pinning::off());
        }
        em.instances
            .iter()
            .filter(|i| with_c || i.state.settings.name != "c")
            .fold(pool, |p, i| p.endpoint(endpoint_of(i)))
    };
    let config = |with_c| {
        EdgeConfig::new()
            .pool(pool(with_c))
            .route(Route::new("/client/", "signalr"))
    };
    let site = EdgeSite::new();
    site.write(&config(false), 1);
    let mut edge = site.spawn(arm, false);
    site.wait_ready(&mut edge).await;
    let template = Target {
        base: site.url(""),
        token: token("key-s", "shared.service.signalr.net", "chat"),
        request_id: String::new(),
    };
    let target = move |request_id: String| Target {
        request_id,
        ..template.clone()
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // The storm: negotiate, connect, echo, close, again, from before the reload to after it.
    let storm = PairStorm::new();
    let (stop, _) = watch::channel(false);
    let mut loops = Vec::new();
    for k in 0..STORM_LOOPS {
        let (storm, http, stop) = (storm.clone(), http.clone(), stop.subscribe());
        let target = target.clone();
        let arm = arm.to_string();
        loops.push(tokio::spawn(async move {
            let mut n = 0;
            while !*stop.borrow() {
                n += 1;
                let t = target(format!("{arm}-storm{k}-{n}"));
                let pair = match t.negotiate(&http).await {
                    Ok((_, id)) => connect_pair(&http, &t, transport_of(n), &id).await,
                    Err(e) => Err(e),
                };
                storm.record("storm", pair);
            }
        }));
    }
    wait_for(Duration::from_secs(20), "the storm under way", || {
        (storm.ok.load(Ordering::Relaxed) >= 10).then_some(())
    })
    .await;

    // Pairs that negotiate now, on the ring {a, b}...
    let straddling = PairStorm::new();
    let mut negotiated = Vec::new();
    for i in 0..STRADDLING_PAIRS {
        let (t, http) = (target(format!("{arm}-pair{i}")), http.clone());
        negotiated.push(tokio::spawn(async move {
            let r = t.negotiate(&http).await;
            (t, r)
        }));
    }
    let mut pending = Vec::new();
    for (i, h) in negotiated.into_iter().enumerate() {
        match h.await.unwrap() {
            (t, Ok((_, id))) => pending.push((i, t, id)),
            (_, Err(e)) => straddling.record("negotiate", Err(e)),
        }
    }
    // ... a reload adds c in the middle of the storm ...
    let before_reload = storm.ok.load(Ordering::Relaxed);
    let c_before = em.instances[2].state.negotiations();
    site.write(&config(true), 1);
    let (code, report) = site.reload().await;
    assert_eq!(code, 200, "{report}");
    // ... and they connect on the ring {a, b, c}.
    let mut connects = Vec::new();
    for (i, t, id) in pending {
        let (straddling, http) = (straddling.clone(), http.clone());
        connects.push(tokio::spawn(async move {
            let r = connect_pair(&http, &t, transport_of(i), &id).await;
            straddling.record("connect", r);
        }));
    }
    for h in connects {
        h.await.unwrap();
    }
    wait_for(
        Duration::from_secs(20),
        "the storm going on after the reload",
        || (storm.ok.load(Ordering::Relaxed) >= before_reload + 20).then_some(()),
    )
    .await;
    let _ = stop.send(true);
    for h in loops {
        let _ = tokio::time::timeout(Duration::from_secs(15), h).await;
    }
    assert!(
        em.instances[2].state.negotiations() > c_before,
        "new pairs reach the endpoint the reload added"
    );
    let unwrap = |s: Arc<PairStorm>| Arc::try_unwrap(s).ok().unwrap();
    (unwrap(straddling), unwrap(storm), edge.log())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adding_an_endpoint_splits_no_negotiate_connect_pair() {
    // One key, audiences not checked: replicas that all accept a token. A long connect window
    // keeps the instances' own 5 s expiry out of a test run on a busy machine.
    let em = emulator(
        ["a", "b", "c"]
            .into_iter()
            .map(|n| InstanceConfig {
                connect_window: Duration::from_secs(60),
                ..instance(n, "key-s", false)
            })
            .collect(),
    )
    .await;
    let count = |s: &PairStorm| {
        (
            s.ok.load(Ordering::Relaxed),
            s.not_found.load(Ordering::Relaxed),
            s.other.lock().unwrap().clone(),
        )
    };
    // The control: without pins, the pairs whose request id moved to c are split.
    let (straddling, storm, _) = pair_storm(&em, "unpinned", false).await;
    let (ok, split, other) = count(&straddling);
    let (storm_ok, storm_split, _) = count(&storm);
    println!(
        "without pinning: {ok} of {STRADDLING_PAIRS} straddling pairs connected, {split} got 404; \
         storm: {storm_ok} pairs, {storm_split} got 404"
    );
    assert!(split > 0, "the test must be able to see a split: {other:?}");

    let (straddling, storm, log) = pair_storm(&em, "pinned", true).await;
    let (ok, split, other) = count(&straddling);
    let (storm_ok, storm_split, storm_other) = count(&storm);
    let pinned = log.lines().filter(|l| l.contains(" rule=pinned ")).count();
    println!(
        "with pinning: {ok} of {STRADDLING_PAIRS} straddling pairs connected, {split} got 404; \
         storm: {storm_ok} pairs, {storm_split} got 404; {pinned} requests routed by pins"
    );
    assert_eq!((split, storm_split), (0, 0), "{other:?} {storm_other:?}");
    assert!(
        other.is_empty() && storm_other.is_empty(),
        "{other:?} {storm_other:?}"
    );
    assert_eq!(ok, STRADDLING_PAIRS);
    assert!(pinned > 0);
}
