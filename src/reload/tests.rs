use std::sync::Arc;

use arc_swap::ArcSwap;

use super::*;
use crate::runtime::resolve::Addresses;

fn conf(endpoints: &[&str], extra: &str) -> String {
    let mut s = String::from(
        "listeners: [{ address: \"127.0.0.1:8080\" }]\npools:\n  signalr:\n    kind: signalr\n    endpoints:\n",
    );
    for (i, e) in endpoints.iter().enumerate() {
        s += &format!(
            "      - {{ url: \"http://{e}\", address: \"127.0.0.1:{}\" }}\n",
            i + 1
        );
    }
    s + "routes: [{ path: /client/, pool: signalr }]\n" + extra
}

struct Setup {
    dir: PathBuf,
    file: PathBuf,
    reloader: Reloader,
    state: SharedRuntime,
}

fn setup(tag: &str, text: &str) -> Setup {
    let dir = std::env::temp_dir().join(format!("se-reload-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("edge.yaml");
    std::fs::write(&file, text).unwrap();
    let (cfg, rt) = Runtime::load(&file, None).unwrap();
    let state: SharedRuntime = Arc::new(ArcSwap::from_pointee(rt));
    let reloader = Reloader::new(&file, cfg, state.clone());
    Setup {
        dir,
        file,
        reloader,
        state,
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn endpoint_names(state: &SharedRuntime) -> Vec<String> {
    state.load().pools[0]
        .endpoints
        .iter()
        .map(|e| e.name.clone())
        .collect()
}

#[tokio::test]
async fn a_good_file_swaps_and_a_bad_one_changes_nothing() {
    let s = setup("swap", &conf(&["a.example", "b.example"], ""));
    let health_a = s.state.load().pools[0].endpoints[0].health.clone();
    std::fs::write(&s.file, conf(&["a.example", "b.example", "c.example"], "")).unwrap();
    let r = s.reloader.reload(Trigger::Admin).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(r.generation, 2);
    assert_eq!(
        r.changes.as_ref().unwrap().endpoints_added,
        ["signalr/c.example (127.0.0.1:3)"]
    );
    assert_eq!(
        endpoint_names(&s.state),
        ["a.example", "b.example", "c.example"]
    );
    // Unchanged endpoints keep their health state (the very same one).
    assert!(Arc::ptr_eq(
        &health_a,
        &s.state.load().pools[0].endpoints[0].health
    ));

    let broken: [(&str, String, &str); 3] = [
        ("syntax", "pools: [".into(), ""),
        (
            "unknown pool",
            conf(&["a.example"], "").replace("pool: signalr }", "pool: ghost }"),
            "routes[0].pool",
        ),
        (
            "listener change",
            conf(&["a.example"], "").replace("8080", "8081"),
            "listeners[0].address",
        ),
    ];
    for (what, text, path) in broken {
        std::fs::write(&s.file, text).unwrap();
        let r = s.reloader.reload(Trigger::Sighup).await;
        assert!(!r.ok, "{what}");
        assert_eq!(r.generation, 2, "{what}");
        let e = r.error.unwrap();
        assert!(e.starts_with(&s.file.display().to_string()), "{what}: {e}");
        assert!(e.contains(path), "{what}: {e}");
        assert_eq!(s.state.load().generation, 2, "{what}");
    }
    assert!(s
        .reloader
        .last()
        .unwrap()
        .error
        .unwrap()
        .contains("binary upgrade"));
    assert_eq!(s.reloader.counts(), (1, 3));
    assert_eq!(
        endpoint_names(&s.state),
        ["a.example", "b.example", "c.example"]
    );
}

#[tokio::test]
async fn concurrent_reloads_run_one_after_the_other() {
    let s = setup("serial", &conf(&["a.example"], ""));
    std::fs::write(&s.file, conf(&["a.example", "b.example"], "")).unwrap();
    let (r1, r2) = tokio::join!(
        s.reloader.reload(Trigger::Admin),
        s.reloader.reload(Trigger::Sighup)
    );
    assert!(r1.ok && r2.ok);
    let mut gens = [r1.generation, r2.generation];
    gens.sort();
    assert_eq!(gens, [2, 3]);
    // The second saw the first's result: nothing left to change.
    let second = if r1.generation == 3 { &r1 } else { &r2 };
    assert!(second.changes.as_ref().unwrap().is_empty());
}

#[tokio::test]
async fn new_endpoints_are_probed_before_they_serve() {
    // Nothing listens on 127.0.0.1:9 (discard): the new endpoint starts unhealthy.
    let hc = "    health_check: { type: tcp, interval: 1h, timeout: 300ms }\n";
    let first = conf(&["a.example"], "").replace("routes:", &format!("{hc}routes:"));
    let s = setup("probe", &first);
    let second = conf(&["a.example", "b.example"], "")
        .replace("127.0.0.1:2", "127.0.0.1:9")
        .replace("routes:", &format!("{hc}routes:"));
    std::fs::write(&s.file, second).unwrap();
    let r = s.reloader.reload(Trigger::Admin).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(r.probes.len(), 1, "only the new endpoint is probed: {r:?}");
    assert_eq!(r.probes[0].endpoint, "signalr/b.example");
    assert!(!r.probes[0].healthy);
    let rt = s.state.load();
    assert!(!rt.pools[0].endpoints[1].is_healthy());
    assert!(rt.pools[0].endpoints[0].is_healthy());
}

#[tokio::test]
async fn readdress_moves_only_the_changed_host_without_reading_the_file() {
    let text = "listeners: [{ address: \"127.0.0.1:8080\" }]\npools:\n  signalr:\n    kind: signalr\n    endpoints:\n      - { url: \"http://localhost:5000\" }\n      - { url: \"http://b.example\", address: \"127.0.0.1:2\" }\nroutes: [{ path: /client/, pool: signalr }]\n";
    let s = setup("readdress", text);
    let before = s.state.load_full();
    let (old, b_health) = (
        before.pools[0].endpoints[0].addr,
        before.pools[0].endpoints[1].health.clone(),
    );
    assert!(before.pools[0].endpoints[0].resolved);
    assert!(!before.pools[0].endpoints[1].resolved, "a fixed address");
    // The file is not read again: a broken one does not matter.
    std::fs::write(&s.file, "not: [yaml").unwrap();
    let mut same = Addresses::default();
    same.insert("localhost".into(), Ok(old.ip()));
    assert_eq!(s.reloader.readdress(same).await, Ok(vec![]));
    let mut failed = Addresses::default();
    failed.insert("localhost".into(), Err("SERVFAIL".into()));
    assert_eq!(
        s.reloader.readdress(failed).await,
        Ok(vec![]),
        "keeps its address"
    );
    assert_eq!(s.reloader.generation(), 1);
    let mut moved = Addresses::default();
    moved.insert("localhost".into(), Ok("127.0.0.9".parse().unwrap()));
    let report = s.reloader.readdress(moved).await.unwrap();
    assert_eq!(
        report,
        [format!("signalr/localhost:5000: {old} -> 127.0.0.9:5000")]
    );
    let after = s.state.load_full();
    assert_eq!(after.generation, 2);
    assert_eq!(
        after.pools[0].endpoints[0].addr.to_string(),
        "127.0.0.9:5000"
    );
    assert!(Arc::ptr_eq(&after.pools[0].endpoints[1].health, &b_health));
    assert_eq!(s.reloader.counts(), (0, 0), "not counted as a reload");
}
