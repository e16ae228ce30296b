//! `--watch`: reload when the configuration file changes on disk, by the same path as SIGHUP
//! and `POST /reload`.
//!
//! The file's *directory* is watched, not the file: editors and `sed -i` replace the file by a
//! rename, and a Kubernetes ConfigMap volume swaps a symlink (`..data`) the file resolves
//! through; an inotify watch on the old inode would see neither. Events are debounced (checked
//! `QUIET` after the last one), and a check reloads only when the file's content differs from
//! what the last check saw, so a touch, a rewrite of the same bytes or the edge's own reads
//! reload nothing.

use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use log::{error, info, warn};
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::ops::Ops;
use crate::config::read::{read_bounded, MAX_CONFIG_BYTES};
use crate::reload::Trigger;

/// How long the directory must be quiet before the file is checked: an editor's save or a
/// ConfigMap swap is several events within milliseconds.
pub const QUIET: Duration = Duration::from_millis(250);

/// The longest a check waits after the first event of a burst, so a directory that never
/// goes quiet (a log file beside the config) still gets its change applied.
pub const MAX_DELAY: Duration = Duration::from_secs(2);

/// What a check knows of the file's content: a hash of its bytes, or `None` when it cannot be
/// read (missing for a moment, removed, or larger than the config check allows).
pub type Fingerprint = Option<u128>;

/// The file's content fingerprint now.
pub fn fingerprint(file: &Path) -> Fingerprint {
    read_bounded(file, MAX_CONFIG_BYTES)
        .ok()
        .map(|bytes| xxhash_rust::xxh3::xxh3_128(&bytes))
}

/// When a burst of events whose first came at `first` and last at `last` is checked.
pub fn due(first: Instant, last: Instant) -> Instant {
    (last + QUIET).min(first + MAX_DELAY)
}

/// Whether an event of this kind can change what the file reads. Opening and reading (the
/// edge's own reads of the file among them) cannot; a write, create, rename, removal or
/// attribute change can.
pub fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Whether an event on the directory entry `name` can change what the file `file_name` reads:
/// the file itself; the entry its symlink goes through (`link_head`, e.g. `..data`); and
/// Kubernetes' atomic-writer entries (`..data`, `..data_tmp`, `..<timestamp>`), so a swap
/// is seen even when the file was not a symlink at the last look. Other files in the
/// directory (logs, a pid file) are not.
pub fn relevant(name: &OsStr, file_name: &OsStr, link_head: Option<&OsStr>) -> bool {
    name == file_name || Some(name) == link_head || name.as_encoded_bytes().starts_with(b"..")
}

/// The first entry of the file's directory that its symlink resolves through (`..data` for
/// `signalr-edge.yaml -> ..data/signalr-edge.yaml`), when it is a symlink with a relative target.
pub fn link_head(file: &Path) -> Option<OsString> {
    let target = std::fs::read_link(file).ok()?;
    match target.components().next()? {
        Component::Normal(name) => Some(name.to_os_string()),
        _ => None,
    }
}

/// The directory to watch and the file's name in it.
fn split(file: &Path) -> Result<(PathBuf, OsString), String> {
    let name = file
        .file_name()
        .ok_or_else(|| format!("{}: not a file name", file.display()))?;
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name.to_os_string()))
}

/// Watches the configuration file's directory and reloads on each change of the file's
/// content; `baseline` is the content the running generation was loaded from. Runs for the
/// life of the process; logs and returns when the directory cannot be watched.
pub async fn watch(ops: Arc<Ops>, baseline: Fingerprint) {
    let file = ops.reloader.file().to_path_buf();
    let (dir, name) = match split(&file) {
        Ok(s) => s,
        Err(e) => {
            error!("--watch: {e}; not watching (SIGHUP and POST /reload still reload)");
            return;
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    // notify calls this on its own thread; the channel hands the events to this task.
    let handler = move |event: notify::Result<notify::Event>| {
        let _ = tx.send(event);
    };
    let mut watcher = match notify::recommended_watcher(handler)
        .and_then(|mut w| w.watch(&dir, RecursiveMode::NonRecursive).map(|()| w))
    {
        Ok(w) => w,
        Err(e) => {
            error!(
                "--watch: cannot watch {}: {e}; not watching (SIGHUP and POST /reload still reload)",
                dir.display()
            );
            return;
        }
    };
    info!(
        "--watch: watching {} for changes of {}",
        dir.display(),
        file.display()
    );
    let mut seen = baseline;
    let mut head = link_head(&file);
    // A change between the load and the watch's start is applied at once.
    check(&ops, &file, &mut seen, false).await;
    loop {
        // Wait for a relevant event, then for the burst to end.
        let Some(first) = next_relevant(&mut rx, &name, head.as_deref()).await else {
            break;
        };
        let mut at = due(first, first);
        // Ends at the deadline, or when the watcher is gone (the outer wait then ends too).
        while let Ok(Some(last)) =
            tokio::time::timeout_at(at, next_relevant(&mut rx, &name, head.as_deref())).await
        {
            at = due(first, last);
        }
        check(&ops, &file, &mut seen, true).await;
        head = link_head(&file);
    }
    drop(watcher.unwatch(&dir));
    error!("--watch: the watch of {} ended", dir.display());
}

/// When the next event that can change the file came; `None` when the watcher is gone.
async fn next_relevant(
    rx: &mut mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
    name: &OsStr,
    head: Option<&OsStr>,
) -> Option<Instant> {
    loop {
        match rx.recv().await? {
            Ok(event) => {
                let hit = changes_content(&event.kind)
                    && event
                        .paths
                        .iter()
                        .any(|p| p.file_name().is_some_and(|n| relevant(n, name, head)));
                // An overflow (paths empty, `need_rescan`) may have dropped a relevant one.
                if hit || event.need_rescan() {
                    return Some(Instant::now());
                }
            }
            Err(e) => warn!("--watch: {e}"),
        }
    }
}

/// Reloads when the file's content is not what the last check saw. A file that fails the
/// reload is remembered too: it is not tried again until it changes. `events`: the check
/// follows events (and says when they changed nothing).
async fn check(ops: &Ops, file: &Path, seen: &mut Fingerprint, events: bool) {
    let path = file.to_path_buf();
    let now = tokio::task::spawn_blocking(move || fingerprint(&path))
        .await
        .unwrap_or(None);
    if now == *seen {
        if !events {
            return;
        }
        info!(
            "--watch: {} changed on disk but reads the same; no reload",
            file.display()
        );
        return;
    }
    *seen = now;
    info!("--watch: {} changed; reloading", file.display());
    ops.reloader.reload(Trigger::Watch).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind, RenameMode};

    #[test]
    fn a_burst_is_checked_quiet_after_its_last_event_but_not_later_than_the_cap() {
        let t0 = Instant::now();
        assert_eq!(due(t0, t0), t0 + QUIET);
        let last = t0 + Duration::from_millis(100);
        assert_eq!(due(t0, last), last + QUIET);
        assert_eq!(due(t0, t0 + MAX_DELAY), t0 + MAX_DELAY);
    }

    #[test]
    fn reads_are_not_changes_and_writes_renames_creates_are() {
        assert!(!changes_content(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!changes_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(changes_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(changes_content(&EventKind::Modify(ModifyKind::Name(
            RenameMode::To
        ))));
        assert!(changes_content(&EventKind::Create(CreateKind::File)));
    }

    #[test]
    fn the_file_its_link_and_configmap_entries_are_relevant_other_files_are_not() {
        let f = OsStr::new("edge.yaml");
        let head = Some(OsStr::new("current"));
        assert!(relevant(OsStr::new("edge.yaml"), f, None));
        assert!(relevant(OsStr::new("current"), f, head));
        assert!(relevant(OsStr::new("..data"), f, None));
        assert!(relevant(OsStr::new("..2026_11_29_10_00_00.1"), f, None));
        assert!(!relevant(OsStr::new("edge.log"), f, head));
        assert!(!relevant(OsStr::new("edge.pid"), f, head));
        assert!(!relevant(OsStr::new("current"), f, None));
    }

    #[test]
    fn the_link_head_is_the_first_entry_of_a_relative_target() {
        let dir = std::env::temp_dir().join(format!("edge-watch-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("..v1")).unwrap();
        std::fs::write(dir.join("..v1/edge.yaml"), "a").unwrap();
        let _ = std::fs::remove_file(dir.join("..data"));
        let _ = std::fs::remove_file(dir.join("edge.yaml"));
        std::os::unix::fs::symlink("..v1", dir.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/edge.yaml", dir.join("edge.yaml")).unwrap();
        assert_eq!(link_head(&dir.join("edge.yaml")), Some("..data".into()));
        assert_eq!(link_head(&dir.join("..v1/edge.yaml")), None, "not a link");
        assert_eq!(
            fingerprint(&dir.join("edge.yaml")),
            fingerprint(&dir.join("..v1/edge.yaml"))
        );
        assert_eq!(fingerprint(&dir.join("missing.yaml")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_directory_of_a_bare_name_is_the_working_directory() {
        assert_eq!(
            split(Path::new("edge.yaml")).unwrap(),
            (PathBuf::from("."), OsString::from("edge.yaml"))
        );
        assert_eq!(
            split(Path::new("/etc/e/edge.yaml")).unwrap(),
            (PathBuf::from("/etc/e"), OsString::from("edge.yaml"))
        );
    }
}
