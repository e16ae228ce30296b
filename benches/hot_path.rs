//! Criterion micro-benchmarks of the per-request hot path: affinity key extraction, instance
//! choice on the ring, route lookup, the whole selection on a parsed request, and token
//! verification (uncached, and the cache hit a long poll's later requests take).
//! Run with `cargo bench --bench hot_path`.

use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use asrs_emulator::token;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::Method;
use pingora_http::RequestHeader;
use signalr_edge::proxy::selection::{select, Selection};
use signalr_edge::runtime::Runtime;
use signalr_edge::signalr::keys::token_audience_host;
use signalr_edge::signalr::token::{self as verifier, TokenKey};
use signalr_edge::signalr::{AffinityInput, Ring};
use testkit::{EdgeConfig, Endpoint, Listener, Pool, Route, Tokens};

const HOSTS: [&str; 3] = [
    "a.service.signalr.net",
    "b.service.signalr.net",
    "c.service.signalr.net",
];

const KEY: &str = "an-access-key-of-the-usual-length-0123456789abcdef";

fn runtime() -> Runtime {
    let signalr = HOSTS
        .iter()
        .enumerate()
        .fold(Pool::signalr("signalr"), |p, (i, h)| {
            p.endpoint(
                Endpoint::url(format!("https://{h}")).address(format!("127.0.0.1:{}", 7001 + i)),
            )
        });
    compile(signalr)
}

/// The same instances by connection string (the key of b signs `jwt()`), tokens verified.
fn verifying_runtime() -> Runtime {
    let signalr = HOSTS
        .iter()
        .enumerate()
        .fold(Pool::signalr("signalr"), |p, (i, h)| {
            let key = if i == 1 {
                KEY.to_string()
            } else {
                format!("key-{i}")
            };
            p.endpoint(
                Endpoint::connection_string(format!(
                    "Endpoint=https://{h};AccessKey={key};Version=1.0;"
                ))
                .address(format!("127.0.0.1:{}", 7001 + i)),
            )
        })
        .tokens(Tokens::verify());
    compile(signalr)
}

fn compile(signalr: Pool) -> Runtime {
    let yaml = EdgeConfig::new()
        .listener(Listener::new("127.0.0.1:0"))
        .pool(signalr)
        .pool(Pool::app("app").endpoint(Endpoint::url("http://127.0.0.1:7000")))
        .route(Route::new("/client/", "signalr"))
        .route(Route::new("/api/", "app"))
        .route(Route::new("/", "app"))
        .to_yaml();
    let cfg = signalr_edge::config::parse_str(&yaml).expect("bench config");
    Runtime::compile(&cfg.service, Path::new("<bench>"), None).expect("bench runtime")
}

/// A token the way the SDK signs it: HS256, audience of instance b, an hour's lifetime.
fn jwt() -> String {
    token::sign(
        KEY,
        &token::audience(HOSTS[1], "chat"),
        Some("user-1"),
        Duration::from_secs(3600),
    )
}

const QUERY: &str = "hub=chat&asrs.op=%2Fchat&negotiateVersion=1&asrs_request_id=ed8NhkhwAAA%3D";

fn affinity(c: &mut Criterion) {
    let jwt = jwt();
    let auth = format!("Bearer {jwt}");
    let query_token = format!("{QUERY}&id=05265228-aa&access_token={jwt}");
    let ip: Option<IpAddr> = Some("192.0.2.7".parse().unwrap());
    let mut g = c.benchmark_group("affinity");
    g.bench_function("header_token", |b| {
        b.iter(|| AffinityInput::new(black_box(Some(QUERY)), black_box(Some(auth.as_bytes())), ip))
    });
    g.bench_function("query_token", |b| {
        b.iter(|| AffinityInput::new(black_box(Some(&query_token)), None, ip))
    });
    g.bench_function("request_id_only", |b| {
        b.iter(|| AffinityInput::new(black_box(Some(QUERY)), None, ip))
    });
    g.bench_function("audience_host", |b| {
        b.iter(|| token_audience_host(black_box(&jwt)))
    });
    g.finish();
}

fn ring(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring");
    for n in [3usize, 10] {
        let names: Vec<String> = (0..n)
            .map(|i| format!("instance-{i}.service.signalr.net"))
            .collect();
        let ring = Ring::new(&names);
        g.bench_function(format!("pick_of_{n}"), |b| {
            b.iter(|| ring.pick(black_box(b"ed8NhkhwAAA="), |_| true))
        });
    }
    g.finish();
}

fn routes(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("routes");
    g.bench_function("find_client", |b| {
        b.iter(|| {
            rt.routes.find(
                black_box(Some("edge.example.com")),
                black_box("/client/negotiate"),
                &Method::POST,
            )
        })
    });
    g.bench_function("find_fallback", |b| {
        b.iter(|| {
            rt.routes.find(
                black_box(Some("edge.example.com")),
                black_box("/index.html"),
                &Method::GET,
            )
        })
    });
    g.finish();
}

fn request(uri: &str, auth: Option<&str>) -> RequestHeader {
    let mut r = RequestHeader::build("POST", uri.as_bytes(), None).expect("request");
    r.insert_header("host", "edge.example.com").expect("host");
    if let Some(a) = auth {
        r.insert_header("authorization", a).expect("auth");
    }
    r
}

fn selection(c: &mut Criterion) {
    let rt = runtime();
    let jwt = jwt();
    let auth = format!("Bearer {jwt}");
    let peer: Option<IpAddr> = Some("192.0.2.7".parse().unwrap());
    let negotiate = request(&format!("/client/negotiate?{QUERY}"), Some(&auth));
    let sse = request(
        &format!("/client/?{QUERY}&id=05265228-aa&access_token={jwt}"),
        None,
    );
    let no_token = request(&format!("/client/negotiate?{QUERY}"), None);
    let mut g = c.benchmark_group("select");
    for (name, req) in [
        ("negotiate_header_token", &negotiate),
        ("sse_query_token", &sse),
        ("request_id_only", &no_token),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut sel = Selection::default();
                let r = select(&rt, black_box(req), peer, &mut sel);
                black_box((r, sel))
            })
        });
    }
    g.finish();
}

fn tokens(c: &mut Criterion) {
    let jwt = jwt();
    let keys = [TokenKey::new(KEY)];
    let skew = Duration::from_secs(30);
    let auth = format!("Bearer {jwt}");
    let peer: Option<IpAddr> = Some("192.0.2.7".parse().unwrap());
    let negotiate = request(&format!("/client/negotiate?{QUERY}"), Some(&auth));
    let mut g = c.benchmark_group("tokens");
    // Read the audience, check the hub, HMAC and the times: what a first request costs.
    g.bench_function("verify_uncached", |b| {
        b.iter(|| {
            let t = verifier::read(black_box(&jwt)).expect("readable");
            t.check_hub(Some("chat")).expect("hub");
            black_box(t.verify(&keys, skew))
        })
    });
    // The whole selection on a verifying pool: the first request verifies and fills the cache.
    g.bench_function("select_negotiate_uncached", |b| {
        b.iter_batched(
            verifying_runtime,
            |rt| {
                let mut sel = Selection::default();
                let r = select(&rt, black_box(&negotiate), peer, &mut sel);
                // The runtime is dropped outside the measurement.
                (r, sel, rt)
            },
            BatchSize::LargeInput,
        )
    });
    // ... and every later request with the same token (a long poll's) is a cache hit.
    let rt = verifying_runtime();
    let first = select(&rt, &negotiate, peer, &mut Selection::default());
    assert!(first.is_ok(), "the bench token verifies: {first:?}");
    g.bench_function("select_negotiate_cached", |b| {
        b.iter(|| {
            let mut sel = Selection::default();
            let r = select(&rt, black_box(&negotiate), peer, &mut sel);
            black_box((r, sel))
        })
    });
    g.finish();
}

criterion_group!(benches, affinity, ring, routes, selection, tokens);
criterion_main!(benches);
