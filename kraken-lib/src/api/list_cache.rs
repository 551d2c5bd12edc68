//! The list of deployments, encoded once per change: each deployment's
//! summary is kept as JSON beside it, in the list's order, and a page is
//! those pieces joined. When the state changes, only the summaries that
//! changed are encoded again; a request never encodes a summary that was
//! already encoded for the same state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;

use crate::deployment::DeploymentSummary;
use crate::state::State;

use super::page::{Cursor, PageRequest};

/// One deployment of the list: its summary and the summary as JSON.
#[derive(Debug)]
struct Entry {
    summary: DeploymentSummary,
    json: Bytes,
}

/// The encoded list as of one version of the state.
#[derive(Debug)]
struct Encoded {
    version: u64,
    /// Oldest request first (by request time, then id).
    entries: Vec<Entry>,
    /// The pages already joined from `entries`, by what was asked (at most
    /// [`KEPT_PAGES`]), so the pages everyone asks for (the first one) are
    /// joined once per change too.
    pages: Mutex<HashMap<PageRequest, Bytes>>,
}

/// How many joined pages are kept per version of the list.
const KEPT_PAGES: usize = 64;

/// The encoded list and the state's version it shows.
#[derive(Debug, Clone, Default)]
pub(super) struct ListCache {
    encoded: Arc<Mutex<Option<Arc<Encoded>>>>,
}

impl ListCache {
    /// The JSON body of the page `page` asks for, as of now: a
    /// [`DeploymentPage`](crate::client::dto::DeploymentPage).
    pub(super) fn page(&self, state: &State, page: &PageRequest) -> Bytes {
        let list = self.current(state);
        let mut pages = list.pages.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(body) = pages.get(page) {
            return body.clone();
        }
        let body = join(&list, page);
        if pages.len() >= KEPT_PAGES {
            pages.clear();
        }
        pages.insert(page.clone(), body.clone());
        body
    }
}

/// The page `page` asks for, joined from the encoded summaries of `list`.
fn join(list: &Encoded, page: &PageRequest) -> Bytes {
    let start = match &page.after {
        None => 0,
        Some(after) => list.entries.partition_point(|e| {
            (&e.summary.created_at, e.summary.id.as_str()) <= (&after.at, after.id.as_str())
        }),
    };
    let end = list.entries.len().min(start + page.limit);
    let items = &list.entries[start..end];
    let next = match items.last() {
        Some(last) if end < list.entries.len() => {
            Some(Cursor::encode(&last.summary.created_at, &last.summary.id))
        }
        _ => None,
    };
    let size: usize = items.iter().map(|e| e.json.len() + 1).sum();
    let mut body = Vec::with_capacity(size + 96);
    body.extend_from_slice(b"{\"items\":[");
    for (i, e) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&e.json);
    }
    body.extend_from_slice(b"],\"next\":");
    match next {
        // A cursor is digits, a dot, an underscore and an id's letters:
        // nothing to escape.
        Some(cursor) => {
            body.push(b'"');
            body.extend_from_slice(cursor.as_bytes());
            body.push(b'"');
        }
        None => body.extend_from_slice(b"null"),
    }
    body.push(b'}');
    Bytes::from(body)
}

impl ListCache {
    /// The encoded list of the state's current version: the kept one when
    /// the state has not changed since, else a new one that reuses the JSON
    /// of every summary that did not change (and is kept for the next callers).
    fn current(&self, state: &State) -> Arc<Encoded> {
        let now = state.version();
        let kept = self.lock().clone();
        if let Some(list) = &kept {
            if list.version == now {
                return Arc::clone(list);
            }
        }
        let (version, summaries) = state.versioned_summaries();
        let before: HashMap<&str, &Entry> = kept
            .as_ref()
            .map(|list| list.entries.iter().map(|e| (e.summary.id.as_str(), e)).collect())
            .unwrap_or_default();
        let entries = summaries
            .into_iter()
            .map(|summary| {
                let json = match before.get(summary.id.as_str()) {
                    Some(old) if old.summary == summary => old.json.clone(),
                    // Encoding a plain struct to JSON cannot fail (string keys
                    // only, no serialiser that errors).
                    _ => Bytes::from(serde_json::to_vec(&summary).unwrap_or_default()),
                };
                Entry { summary, json }
            })
            .collect();
        let fresh = Arc::new(Encoded { version, entries, pages: Mutex::default() });
        let mut slot = self.lock();
        // Another request may have stored a newer list meanwhile; keep that one.
        if slot.as_ref().is_none_or(|list| list.version < version) {
            *slot = Some(Arc::clone(&fresh));
        }
        fresh
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<Encoded>>> {
        self.encoded.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
