//! DNS re-resolution: an endpoint given by host name follows its record (`resolver.refresh`,
//! against a test nameserver), a WebSocket opened on the old address lives on, and a failed
//! lookup (SERVFAIL, no answer) keeps the last good address.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use asrs_emulator::Emulator;
use testkit::client::negotiate::try_negotiate;
use testkit::{
    emulator, free_port, http, instance, token, Answer, Client, Edge, EdgeConfig, Endpoint, Pool,
    Route, Target, TestDns, Transport,
};

const HOST: &str = "inst.test";
const REFRESH: Duration = Duration::from_millis(200);
/// Upper bound on how long a move may take: a refresh, the lookup, the compile and the first
/// health check, with room for a loaded machine (measured: within one refresh).
const MOVE_LIMIT: Duration = Duration::from_secs(5);

/// An emulated instance named `name` answering to `inst.test` on `ip:port`.
async fn instance_on(name: &str, ip: Ipv4Addr, port: u16) -> Emulator {
    let mut i = instance(name, "k", true);
    i.host = HOST.to_string();
    i.listen = (ip, port).into();
    emulator(vec![i]).await
}

fn target(edge: &Edge, id: &str) -> Target {
    Target {
        base: edge.url(""),
        token: token("k", HOST, "chat"),
        request_id: id.to_string(),
    }
}

/// The instance a new negotiate lands on (empty when none answered).
async fn lands_on(edge: &Edge, id: &str) -> String {
    let t = target(edge, id);
    let q = format!("hub=chat&negotiateVersion=1&asrs_request_id={id}");
    match try_negotiate(&http(), &t.base, &q, &t.token).await {
        Ok(n) if n.status == 200 => n.instance,
        Ok(n) => format!("status {}", n.status),
        Err(e) => format!("{e:?}"),
    }
}

async fn status(admin: u16) -> serde_json::Value {
    testkit::get_json(&format!("http://127.0.0.1:{admin}/status")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_follow_a_dns_change_and_open_ones_stay() {
    let dns = TestDns::start().await;
    let (first, second) = (Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3));
    dns.set(HOST, Answer::A(vec![first]));
    let one = instance_on("one", first, 0).await;
    let port = one.instances[0].addr.port();
    let two = instance_on("two", second, port).await;
    let admin = free_port();
    let edge = Edge::start(
        EdgeConfig::new()
            .pool(
                Pool::signalr("signalr").endpoint(Endpoint::connection_string(format!(
                    "Endpoint=http://{HOST};AccessKey=k;Version=1.0;Port={port};"
                ))),
            )
            .route(Route::new("/client/", "signalr"))
            .admin(format!("127.0.0.1:{admin}"))
            .resolver(dns.addr, REFRESH, Duration::from_millis(300)),
    );
    let (mut ws, on) = Client::connect(&http(), &target(&edge, "before"), Transport::WebSockets)
        .await
        .unwrap();
    assert_eq!(on, "one");
    ws.echo(1).await.unwrap();

    // The record moves: new connections follow within about one refresh.
    dns.set(HOST, Answer::A(vec![second]));
    let moved = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        let on = lands_on(&edge, &format!("m{n}")).await;
        if on == "two" {
            break;
        }
        assert_eq!(on, "one", "no failure while moving");
        assert!(
            moved.elapsed() < MOVE_LIMIT,
            "still on one after {MOVE_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = moved.elapsed();
    eprintln!("new connections moved after {took:?} (refresh {REFRESH:?}, {n} negotiates)");
    // The WebSocket opened before the change still talks to the old address.
    ws.echo(2).await.unwrap();
    assert_eq!(ws.whoami("before").await.unwrap()["instance"], "one");
    let (mut ws2, on) = Client::connect(&http(), &target(&edge, "after"), Transport::WebSockets)
        .await
        .unwrap();
    assert_eq!(on, "two");
    ws2.echo(1).await.unwrap();
    let line = format!("dns: endpoint signalr/{HOST}:{port}: {first}:{port} -> {second}:{port}");
    assert!(edge.log().contains(&line), "{line} in\n{}", edge.log());
    let s = status(admin).await;
    assert_eq!(s["dns"]["endpoints_moved"], 1, "{s}");
    assert!(s["generation"].as_u64().unwrap() >= 2, "{s}");

    // SERVFAIL, then no answer at all: the endpoint keeps its last good address.
    for (answer, what) in [(Answer::ServFail, "SERVFAIL"), (Answer::Silent, "silence")] {
        let failures = status(admin).await["dns"]["lookup_failures"]
            .as_u64()
            .unwrap();
        dns.set(HOST, answer);
        let started = Instant::now();
        loop {
            let s = status(admin).await;
            if s["dns"]["lookup_failures"].as_u64().unwrap() >= failures + 2 {
                break;
            }
            assert!(
                started.elapsed() < MOVE_LIMIT,
                "{what}: no failed lookup counted: {s}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            lands_on(&edge, what).await,
            "two",
            "{what}: last address kept"
        );
    }
    assert!(edge.log().contains(&format!("dns: cannot resolve {HOST}")));
    ws.echo(3).await.unwrap();
    assert_eq!(status(admin).await["dns"]["endpoints_moved"], 1);
    assert!(one.instances[0].state.negotiations() >= 1);
    assert!(two.instances[0].state.negotiations() >= 2);
}
