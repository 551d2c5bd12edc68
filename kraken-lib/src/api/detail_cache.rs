//! Each deployment's full record as last encoded for the single-deployment
//! call, with the mark of the content it shows: a read whose record has not
//! changed since is answered with those bytes, without copying the record
//! under the state's lock or encoding it again. At most one copy per stored
//! deployment is kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;

use crate::state::{RecordLookup, RecordMark, State};

/// The encoded records, by deployment id.
#[derive(Debug, Clone, Default)]
pub(super) struct DetailCache {
    kept: Arc<Mutex<HashMap<String, (RecordMark, Bytes)>>>,
}

impl DetailCache {
    /// The JSON body of deployment `id` as of now; `None` when there is no
    /// such deployment.
    pub(super) fn body(&self, state: &State, id: &str) -> Option<Bytes> {
        let kept = self.lock().get(id).cloned();
        match state.deployment_unless(id, kept.as_ref().map(|(mark, _)| *mark)) {
            RecordLookup::Unchanged => kept.map(|(_, body)| body),
            RecordLookup::Changed(mark, d) => {
                // Encoding a plain struct to JSON cannot fail (string keys
                // only, no serialiser that errors).
                let body = Bytes::from(serde_json::to_vec(&d).unwrap_or_default());
                let mut all = self.lock();
                // A request that read a newer record meanwhile keeps its copy.
                if all.get(id).is_none_or(|(old, _)| *old < mark) {
                    all.insert(id.to_string(), (mark, body.clone()));
                }
                Some(body)
            }
            _ => {
                self.lock().remove(id);
                None
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (RecordMark, Bytes)>> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
