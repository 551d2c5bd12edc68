//! The list of deployments, encoded once per change of the state: the list
//! call serves the same bytes to every client until a deployment (or a node)
//! changes, instead of encoding every deployment for every request.

use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;

use crate::state::State;

/// The encoded list and the state's version it shows.
#[derive(Debug, Clone, Default)]
pub(super) struct ListCache {
    encoded: Arc<Mutex<Option<(u64, Bytes)>>>,
}

impl ListCache {
    /// The JSON body of the list as of now: the copy when the state has not
    /// changed since it was made, else a fresh encoding (kept for the next
    /// callers).
    pub(super) fn body(&self, state: &State) -> Bytes {
        let now = state.version();
        if let Some((version, body)) = self.lock().as_ref() {
            if *version == now {
                return body.clone();
            }
        }
        let (version, summaries) = state.versioned_summaries();
        // Encoding plain structs to JSON cannot fail (string keys only, no
        // serialiser that errors).
        let body = Bytes::from(serde_json::to_vec(&summaries).unwrap_or_default());
        let mut kept = self.lock();
        // Another request may have stored a newer list meanwhile; keep that one.
        if kept.as_ref().is_none_or(|(v, _)| *v < version) {
            *kept = Some((version, body.clone()));
        }
        body
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(u64, Bytes)>> {
        self.encoded.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
