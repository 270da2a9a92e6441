//! `--source FILE`: Kubernetes objects from a YAML/JSON file, reloaded when it changes.
//!
//! The file is polled (every [`POLL_INTERVAL`]): its metadata (size, mtime, inode) is compared
//! with the last load's, and only a change leads to a read; the content's hash then decides
//! whether anything really changed (`touch` alone reloads nothing). Polling the path, not an
//! open file, follows editors and tools that replace the file by renaming a new one over it
//! (vim, `kubectl ... > tmp && mv`), and a change is read only after the metadata has been
//! still for [`SETTLE`], so a file written in several steps is not read half-way.
//!
//! A reload that fails as a whole (not YAML) is logged with the file and the document index,
//! and the last good state stays; an object that fails validation is logged and left out, the
//! rest applies. A missing file (between an editor's delete and create) keeps the last state.
//!
//! Limit: the kernel stamps mtime from a coarse clock, so a rewrite with the same size and inode
//! within one clock tick of the version last read can go unnoticed until the next change (kernels
//! with multigrain timestamps, 6.13+, stamp finely once the time has been read, as it is here).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::objects::{DesiredState, LoadReport, ParseError};

/// How often the file's metadata is checked.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How long the metadata must stay unchanged before a changed file is read.
pub const SETTLE: Duration = Duration::from_millis(100);

/// Why a file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not YAML or JSON; nothing in it was used.
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: ParseError },
}

/// One successful load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// 1 for the first load, +1 for each reload that changed the state.
    pub generation: u64,
    pub state: DesiredState,
    /// What the load skipped (bad objects, other kinds).
    pub report: LoadReport,
}

/// Load a file once.
pub fn load(path: &Path) -> Result<(DesiredState, LoadReport), FileError> {
    let text = read(path)?;
    parse(path, &text)
}

fn read(path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_owned(),
        source,
    })
}

fn parse(path: &Path, text: &str) -> Result<(DesiredState, LoadReport), FileError> {
    DesiredState::parse(text).map_err(|source| FileError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Log what a load skipped: each bad object as an error, each other note as a warning.
pub fn log_report(path: &Path, report: &LoadReport) {
    for e in &report.errors {
        match e.document {
            Some(d) => tracing::error!(file = %path.display(), document = d, "{e}; object skipped"),
            None => tracing::error!(file = %path.display(), "{e}; object skipped"),
        }
    }
    for n in &report.notes {
        tracing::warn!(file = %path.display(), "{n}");
    }
}

/// What identifies one version of the file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: Option<SystemTime>,
    dev: u64,
    ino: u64,
}

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Fingerprint {
        len: m.len(),
        modified: m.modified().ok(),
        dev: m.dev(),
        ino: m.ino(),
    })
}

fn content_hash(text: &str) -> u64 {
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// The reload logic without the timer: [`changed`](Self::changed) is cheap (one `stat`),
/// [`reload`](Self::reload) reads and parses.
#[derive(Debug)]
pub struct FileWatcher {
    path: PathBuf,
    seen: Option<Fingerprint>,
    hash: u64,
    generation: u64,
}

impl FileWatcher {
    /// Load the file for the first time; an unreadable or unparsable file is an error here
    /// (there is no last good state to keep).
    pub fn open(path: &Path) -> Result<(FileWatcher, Loaded), FileError> {
        let seen = fingerprint(path);
        let text = read(path)?;
        let (state, report) = parse(path, &text)?;
        let watcher = FileWatcher {
            path: path.to_owned(),
            seen,
            hash: content_hash(&text),
            generation: 1,
        };
        Ok((
            watcher,
            Loaded {
                generation: 1,
                state,
                report,
            },
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True if the file's metadata differs from the last read (a missing file: false).
    pub fn changed(&self) -> bool {
        fingerprint(&self.path).is_some_and(|f| Some(f) != self.seen)
    }

    /// Read the file if it changed: `None` if it did not (or only its metadata did), else the
    /// new state or the reason it was refused (the caller keeps its last good state). A
    /// refused version is not retried until the file changes again.
    pub fn reload(&mut self) -> Option<Result<Loaded, FileError>> {
        let before = fingerprint(&self.path)?;
        if Some(before) == self.seen {
            return None;
        }
        let text = match read(&self.path) {
            Ok(t) => t,
            // Gone between the stat and the read (an editor's rename): try again next time.
            Err(FileError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return None;
            }
            Err(e) => {
                self.seen = Some(before);
                return Some(Err(e));
            }
        };
        self.seen = Some(before);
        let hash = content_hash(&text);
        if hash == self.hash {
            return None;
        }
        self.hash = hash;
        Some(parse(&self.path, &text).map(|(state, report)| {
            self.generation += 1;
            Loaded {
                generation: self.generation,
                state,
                report,
            }
        }))
    }

    /// Poll forever (until every receiver is gone), publishing each good reload. Runs on the
    /// caller's tokio runtime; the reads are small and synchronous.
    pub async fn run(mut self, tx: watch::Sender<Arc<Loaded>>) {
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if tx.is_closed() {
                return;
            }
            if !self.changed() {
                continue;
            }
            // Let a writer finish: read only once the metadata has stopped moving.
            let mut last = fingerprint(&self.path);
            loop {
                tokio::time::sleep(SETTLE).await;
                let now = fingerprint(&self.path);
                if now == last {
                    break;
                }
                last = now;
            }
            match self.reload() {
                None => {}
                Some(Ok(loaded)) => {
                    log_report(&self.path, &loaded.report);
                    tracing::info!(
                        file = %self.path.display(),
                        generation = loaded.generation,
                        nodes = loaded.state.nodes.len(),
                        services = loaded.state.services.len(),
                        endpoint_slices = loaded.state.endpoint_slices.len(),
                        skipped = loaded.report.errors.len(),
                        "objects reloaded"
                    );
                    tx.send_replace(Arc::new(loaded));
                }
                Some(Err(e)) => {
                    tracing::error!("reload failed, keeping the last good state: {e}");
                }
            }
        }
    }
}

/// Load `path` and keep reloading it on the current tokio runtime. The receiver holds the
/// first load at once; each good reload replaces it.
pub fn watch(
    path: &Path,
) -> Result<(watch::Receiver<Arc<Loaded>>, tokio::task::JoinHandle<()>), FileError> {
    let (watcher, first) = FileWatcher::open(path)?;
    log_report(path, &first.report);
    let (tx, rx) = watch::channel(Arc::new(first));
    let task = tokio::spawn(watcher.run(tx));
    Ok((rx, task))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    /// A scratch directory removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("kxdp-file-source-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
        fn file(&self) -> PathBuf {
            self.0.join("objects.yaml")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn node(name: &str, cidr: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\nspec:\n  podCIDR: {cidr}\n---\n"
        )
    }

    fn names(l: &Loaded) -> Vec<String> {
        l.state.nodes.keys().cloned().collect()
    }

    #[test]
    fn reloads_on_change_and_keeps_the_last_good_state() {
        let dir = Scratch::new("reload");
        let f = dir.file();
        std::fs::write(&f, node("a", "10.244.1.0/24")).unwrap();
        let (mut w, first) = FileWatcher::open(&f).unwrap();
        assert_eq!(names(&first), ["a"]);
        assert!(w.reload().is_none(), "unchanged");

        // A new length: a new fingerprint even within one tick of the kernel's clock.
        std::fs::write(&f, node("bb", "10.244.1.0/24")).unwrap();
        let l = w.reload().unwrap().unwrap();
        assert_eq!((names(&l), l.generation), (vec!["bb".to_owned()], 2));

        // Rewriting the same bytes is no change.
        std::fs::write(&f, node("bb", "10.244.1.0/24")).unwrap();
        assert!(w.reload().is_none());

        // Not YAML: an error naming the file and the document; nothing new published.
        std::fs::write(
            &f,
            format!("{}kind: [unclosed\n", node("c", "10.244.3.0/24")),
        )
        .unwrap();
        let e = w.reload().unwrap().unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: document 2: ", f.display())),
            "{e}"
        );
        assert!(w.reload().is_none(), "a refused version is not retried");

        // One bad object: skipped, the rest applies.
        std::fs::write(
            &f,
            format!(
                "{}{}",
                node("a", "10.244.1.0/24"),
                node("d", "10.244.300.0/24")
            ),
        )
        .unwrap();
        let l = w.reload().unwrap().unwrap();
        assert_eq!((names(&l), l.generation), (vec!["a".to_owned()], 3));
        assert_eq!(
            l.report.errors[0].to_string(),
            "Node d: spec.podCIDR: \"10.244.300.0/24\" is not a valid CIDR"
        );
        assert_eq!(l.report.errors[0].document, Some(2));
    }

    #[test]
    fn follows_a_file_replaced_by_rename() {
        let dir = Scratch::new("rename");
        let f = dir.file();
        std::fs::write(&f, node("a", "10.244.1.0/24")).unwrap();
        let (mut w, _) = FileWatcher::open(&f).unwrap();
        // What vim and `mv` do: a new inode takes the name; the old one is gone.
        let tmp = dir.0.join("objects.yaml.tmp");
        std::fs::write(&tmp, node("z", "10.244.9.0/24")).unwrap();
        std::fs::rename(&tmp, &f).unwrap();
        assert!(w.changed());
        assert_eq!(names(&w.reload().unwrap().unwrap()), ["z"]);
        // Deleted: nothing to read, the last state stands; recreated: read again.
        std::fs::remove_file(&f).unwrap();
        assert!(!w.changed());
        assert!(w.reload().is_none());
        std::fs::write(&f, node("yy", "10.244.8.0/24")).unwrap();
        assert_eq!(names(&w.reload().unwrap().unwrap()), ["yy"]);
    }

    #[test]
    fn a_missing_or_bad_file_fails_the_first_load() {
        let dir = Scratch::new("first");
        let f = dir.file();
        let e = FileWatcher::open(&f).unwrap_err().to_string();
        assert!(e.starts_with(&format!("reading {}: ", f.display())), "{e}");
        std::fs::write(&f, "a: b: c\n").unwrap();
        let e = FileWatcher::open(&f).unwrap_err().to_string();
        assert!(e.contains("document 1: "), "{e}");
    }

    #[tokio::test]
    async fn the_watch_channel_gets_each_good_reload() {
        let dir = Scratch::new("watch");
        let f = dir.file();
        std::fs::write(&f, node("a", "10.244.1.0/24")).unwrap();
        let (mut rx, task) = watch(&f).unwrap();
        assert_eq!(names(&rx.borrow_and_update()), ["a"]);
        std::fs::write(
            &f,
            format!(
                "{}{}",
                node("a", "10.244.1.0/24"),
                node("b", "10.244.2.0/24")
            ),
        )
        .unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(names(&rx.borrow_and_update()), ["a", "b"]);
        drop(rx);
        // The task ends once nobody listens.
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}
