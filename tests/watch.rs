//! `--watch`: the edge reloads when its configuration file changes on disk: an edit in place,
//! a Kubernetes ConfigMap update (a symlink swapped over `..data`), a burst of writes (one
//! reload or two, not ten), a file that reads the same (none), a broken file (refused, the
//! edge keeps serving), and after a binary upgrade (the new process watches). 127.0.0.1 only,
//! every wait bounded.

use std::path::Path;
use std::time::Duration;

use asrs_emulator::Emulator;
use testkit::*;

const LIMIT: Duration = Duration::from_secs(20);

/// Generation `n`'s file: an app pool (an emulated instance, whose `/api/health` answers
/// 200 to its own host name) behind `/v<n>/` only, so a request tells which file is serving.
fn config(em: &Emulator, n: u32) -> EdgeConfig {
    let prefix = format!("/v{n}");
    EdgeConfig::new()
        .pool(
            Pool::app("app")
                .endpoint(Endpoint::url("http://a.service.signalr.net").address(addr_of(em, 0)))
                .host_header("endpoint"),
        )
        .route(Route::new(&format!("{prefix}/"), "app").strip_prefix(&prefix))
}

/// The status code of `GET /v<n>/api/health` through the edge (0: no answer).
async fn served(site: &EdgeSite, n: u32) -> u16 {
    match http()
        .get(site.url(&format!("/v{n}/api/health")))
        .send()
        .await
    {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// Waits until `/status` satisfies `done`, and returns it.
async fn status_until(site: &EdgeSite, what: &str, done: impl Fn(&serde_json::Value) -> bool) {
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let s = site.status().await;
        if done(&s) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {what} within {LIMIT:?}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn generation(s: &serde_json::Value) -> u64 {
    s["generation"].as_u64().unwrap()
}

fn reloads(s: &serde_json::Value) -> (u64, u64) {
    let r = &s["reloads"];
    (r["ok"].as_u64().unwrap(), r["failed"].as_u64().unwrap())
}

/// Writes `text` to `file` the way an editor saving in place does.
fn write(file: &Path, text: &str) {
    std::fs::write(file, text).unwrap();
}

async fn start(site: &EdgeSite, name: &str, conf: &Path, flags: &[&str]) -> EdgeProcess {
    let mut p = site.spawn_on(name, conf, flags);
    site.wait_ready(&mut p).await;
    p.wait_log("--watch: watching", LIMIT).await;
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_reloads_and_a_broken_file_is_refused_while_the_edge_serves() {
    let em = emulator(vec![instance("a", "key-a", false)]).await;
    let site = EdgeSite::new();
    site.write(&config(&em, 1), 1);
    let mut edge = start(&site, "edge", &site.conf(), &["--watch"]).await;
    assert_eq!(served(&site, 1).await, 200);

    site.write(&config(&em, 2), 1);
    status_until(&site, "generation 2", |s| generation(s) == 2).await;
    let s = site.status().await;
    assert_eq!(s["last_reload"]["trigger"], "file change", "{s}");
    assert_eq!(s["last_reload"]["ok"], true, "{s}");
    assert_eq!((served(&site, 2).await, served(&site, 1).await), (200, 404));

    // Broken: refused, logged like any reload, and generation 2 goes on serving.
    write(&site.conf(), "routes: [ { path: /, pool: ghost\n");
    status_until(&site, "a failed reload", |s| reloads(s).1 == 1).await;
    let s = site.status().await;
    assert_eq!((generation(&s), reloads(&s)), (2, (1, 1)), "{s}");
    assert!(s["last_reload"]["error"]
        .as_str()
        .is_some_and(|e| e.contains("edge.yaml")));
    edge.wait_log(
        "reload (file change) failed; generation 2 keeps serving",
        LIMIT,
    )
    .await;
    assert_eq!(served(&site, 2).await, 200);

    // Mended: the next change reloads.
    site.write(&config(&em, 3), 1);
    status_until(&site, "generation 3", |s| generation(s) == 3).await;
    assert_eq!(served(&site, 3).await, 200);
    edge.assert_running();
}

/// Writes generation `n` into the ConfigMap volume `dir` as the kubelet does: a new dated
/// directory, a `..data_tmp` symlink to it renamed over `..data`, the old directory removed.
fn configmap_update(dir: &Path, n: u32, text: &str) {
    let dated = format!("..2026_11_29_10_00_0{n}.{n}");
    std::fs::create_dir(dir.join(&dated)).unwrap();
    std::fs::write(dir.join(&dated).join("edge.yaml"), text).unwrap();
    let old = std::fs::read_link(dir.join("..data")).ok();
    std::os::unix::fs::symlink(&dated, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_symlink_swap_reloads() {
    let em = emulator(vec![instance("a", "key-a", false)]).await;
    let site = EdgeSite::new();
    let cm = site.dir.join("configmap");
    std::fs::create_dir(&cm).unwrap();
    configmap_update(&cm, 1, &site.text(&config(&em, 1), 1));
    std::os::unix::fs::symlink("..data/edge.yaml", cm.join("edge.yaml")).unwrap();
    let mut edge = start(&site, "edge", &cm.join("edge.yaml"), &["--watch"]).await;
    assert_eq!(served(&site, 1).await, 200);

    for n in [2, 3] {
        configmap_update(&cm, n, &site.text(&config(&em, n), 1));
        status_until(&site, "the swap's reload", |s| {
            generation(s) == u64::from(n)
        })
        .await;
        let s = site.status().await;
        assert_eq!(s["last_reload"]["trigger"], "file change", "{s}");
        assert_eq!(reloads(&s), (u64::from(n) - 1, 0), "{s}");
        assert_eq!(served(&site, n).await, 200);
    }
    edge.assert_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_quick_writes_reload_at_most_twice_and_the_same_content_not_at_all() {
    let em = emulator(vec![instance("a", "key-a", false)]).await;
    let site = EdgeSite::new();
    site.write(&config(&em, 1), 1);
    let mut edge = start(&site, "edge", &site.conf(), &["--watch"]).await;
    let same = "reads the same; no reload";

    // The same bytes again (and a log file beside it, written all along): no reload.
    site.write(&config(&em, 1), 1);
    edge.wait_log(same, LIMIT).await;
    let s = site.status().await;
    assert_eq!((generation(&s), reloads(&s)), (1, (0, 0)), "{s}");

    // Ten writes 20 ms apart: one burst.
    for n in 2..=11 {
        site.write(&config(&em, n), 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    status_until(&site, "a reload of the last write", |s| {
        s["last_reload"]["ok"] == true && reloads(s).0 >= 1
    })
    .await;
    let deadline = std::time::Instant::now() + LIMIT;
    while served(&site, 11).await != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the last write never served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A barrier: the same content once more; once the watcher says so, it has handled every
    // event of the burst.
    let before = edge.log().matches(same).count();
    site.write(&config(&em, 11), 1);
    wait_for(LIMIT, "the barrier's check", || {
        (edge.log().matches(same).count() > before).then_some(())
    })
    .await;
    let s = site.status().await;
    let (ok, failed) = reloads(&s);
    println!("10 writes 20 ms apart: {ok} reload(s), {failed} failed");
    assert!((1..=2).contains(&ok) && failed == 0, "{s}");
    assert_eq!(served(&site, 10).await, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_of_a_binary_upgrade_watches_too() {
    let em = emulator(vec![instance("a", "key-a", false)]).await;
    let site = EdgeSite::new();
    site.write(&config(&em, 1), 1);
    let mut old = start(&site, "old", &site.conf(), &["--watch"]).await;
    let mut new = site.spawn_on("new", &site.conf(), &["-u", "--watch"]);
    send_signal(old.pid(), "QUIT");
    new.wait_log("took over listening sockets", LIMIT).await;
    old.wait_exit(LIMIT).await;
    new.wait_log("--watch: watching", LIMIT).await;
    let pid = u64::from(new.pid());
    status_until(&site, "the new process", |s| s["pid"] == pid).await;

    site.write(&config(&em, 2), 1);
    status_until(&site, "the new process's reload", |s| {
        s["last_reload"]["trigger"] == "file change" && s["last_reload"]["ok"] == true
    })
    .await;
    assert_eq!(served(&site, 2).await, 200);
    new.assert_running();
}
