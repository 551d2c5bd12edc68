//! Trees the orchestrator fetched, kept for the node's own worker so that a
//! deployment is fetched once.
//!
//! The orchestrator reads a repository before it places the deployment; when
//! the deployment lands on the same agent, its worker takes the tree from
//! here (moving the directory, nothing is copied) instead of fetching the
//! same commit again. A tree is taken only for the deployment and the exact
//! commit it was fetched for; trees nobody takes go after [`KEEP_FOR`], and
//! no more than [`MAX_KEPT`] are kept at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a tree nobody took is kept.
pub const KEEP_FOR: Duration = Duration::from_secs(600);
/// The most trees kept at once; the oldest goes first.
pub const MAX_KEPT: usize = 16;

/// A fetched work tree in a temporary directory of its own, removed when
/// this is dropped (unless it was moved away with [`FetchedTree::move_to`]).
#[derive(Debug)]
pub struct FetchedTree {
    dir: tempfile::TempDir,
    tree: PathBuf,
}

impl FetchedTree {
    /// A tree to be fetched into `dir` (at `dir/src`).
    pub(super) fn new(dir: tempfile::TempDir) -> Self {
        let tree = dir.path().join("src");
        Self { dir, tree }
    }

    /// Where the work tree is.
    pub fn path(&self) -> &Path {
        &self.tree
    }

    /// Moves the work tree to `dest` (which must not exist, on the same file
    /// system); what is left is removed.
    ///
    /// # Errors
    /// The file system's error; the tree is then removed with this.
    pub fn move_to(self, dest: &Path) -> std::io::Result<()> {
        std::fs::rename(&self.tree, dest)
        // `self.dir` goes here, with whatever was left in it.
    }

    /// The temporary directory holding the tree.
    pub fn holder(&self) -> &Path {
        self.dir.path()
    }
}

struct Entry {
    tree: FetchedTree,
    since: Instant,
    /// The order it was kept in (the oldest goes first).
    order: u64,
}

#[derive(Default)]
struct Kept {
    entries: HashMap<(String, String), Entry>,
    next: u64,
}

/// Fetched trees kept for the node's own worker, by deployment and commit;
/// cheap to clone (clones share the trees).
#[derive(Clone, Default)]
pub struct FetchedTrees {
    // A std mutex: held only to move entries in or out, never across an
    // `.await`; directories are removed after it is released.
    inner: Arc<Mutex<Kept>>,
}

impl std::fmt::Debug for FetchedTrees {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchedTrees").field("kept", &self.len()).finish()
    }
}

impl FetchedTrees {
    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps `tree`, fetched at `commit` for `deployment` (replacing one
    /// kept for the same deployment and commit). Trees older than
    /// [`KEEP_FOR`] go, and the oldest beyond [`MAX_KEPT`].
    pub fn keep(&self, deployment: &str, commit: &str, tree: FetchedTree) {
        let gone = {
            let mut guard = self.lock();
            let order = guard.next;
            guard.next += 1;
            let kept = &mut guard.entries;
            let mut gone: Vec<Entry> = Vec::new();
            let entry = Entry { tree, since: Instant::now(), order };
            gone.extend(kept.insert((deployment.into(), commit.into()), entry));
            let stale: Vec<_> =
                kept.iter().filter(|(_, e)| e.since.elapsed() > KEEP_FOR).map(|(k, _)| k.clone()).collect();
            gone.extend(stale.iter().filter_map(|k| kept.remove(k)));
            while kept.len() > MAX_KEPT {
                let Some(oldest) = kept.iter().min_by_key(|(_, e)| e.order).map(|(k, _)| k.clone()) else {
                    break;
                };
                gone.extend(kept.remove(&oldest));
            }
            gone
        };
        drop(gone);
    }

    /// The tree fetched at `commit` for `deployment`, if it is kept.
    pub fn take(&self, deployment: &str, commit: &str) -> Option<FetchedTree> {
        let entry = self.lock().entries.remove(&(deployment.to_string(), commit.to_string()));
        entry.map(|e| e.tree)
    }

    /// Removes every tree kept for `deployment`.
    pub fn discard(&self, deployment: &str) {
        let gone: Vec<Entry> = {
            let mut guard = self.lock();
            let kept = &mut guard.entries;
            let keys: Vec<_> = kept.keys().filter(|(d, _)| d == deployment).cloned().collect();
            keys.iter().filter_map(|k| kept.remove(k)).collect()
        };
        drop(gone);
    }

    /// How many trees are kept.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no tree is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path) -> FetchedTree {
        let t = FetchedTree::new(tempfile::tempdir_in(root).expect("temp dir"));
        std::fs::create_dir(t.path()).expect("tree");
        std::fs::write(t.path().join("app.txt"), "hello").expect("file");
        t
    }

    #[test]
    fn a_tree_is_taken_only_for_its_deployment_and_commit_and_moved_whole() {
        let root = tempfile::tempdir().expect("root");
        let trees = FetchedTrees::default();
        let t = tree(root.path());
        let holder = t.holder().to_path_buf();
        trees.keep("d1", "c1", t);
        assert!(trees.take("d1", "c2").is_none(), "another commit is not this tree");
        assert!(trees.take("d2", "c1").is_none(), "another deployment is not this tree");
        let t = trees.take("d1", "c1").expect("kept");
        assert!(trees.take("d1", "c1").is_none(), "taken once");
        let dest = root.path().join("work");
        t.move_to(&dest).expect("moved");
        assert_eq!(std::fs::read_to_string(dest.join("app.txt")).expect("moved file"), "hello");
        assert!(!holder.exists(), "the temporary directory is removed");
    }

    #[test]
    fn trees_nobody_takes_are_bounded_and_removed() {
        let root = tempfile::tempdir().expect("root");
        let trees = FetchedTrees::default();
        let first = tree(root.path());
        let first_holder = first.holder().to_path_buf();
        trees.keep("d0", "c", first);
        for i in 1..=MAX_KEPT {
            trees.keep(&format!("d{i}"), "c", tree(root.path()));
        }
        assert_eq!(trees.len(), MAX_KEPT);
        assert!(trees.take("d0", "c").is_none(), "the oldest went");
        assert!(!first_holder.exists(), "and its directory with it");
        let last = trees.take(&format!("d{MAX_KEPT}"), "c").expect("the newest is kept");
        let last_holder = last.holder().to_path_buf();
        trees.keep("again", "c", last);
        trees.discard("again");
        assert!(!last_holder.exists(), "a discarded tree is removed");
    }
}
