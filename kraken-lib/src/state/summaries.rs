//! The list of deployment summaries together with the version of the state
//! it shows, read at one moment, so a copy of the list can be kept until the
//! state changes; and one deployment with a mark of its content, so a copy
//! of its encoding can be kept until it changes.

use chrono::{DateTime, Utc};

use crate::deployment::{Deployment, DeploymentSummary};

use super::State;

impl State {
    /// The summaries of all deployments, oldest request first, and the
    /// version of the last durable change they include. Every change of a
    /// deployment that a summary shows is a new version.
    pub fn versioned_summaries(&self) -> (u64, Vec<DeploymentSummary>) {
        let inner = self.lock();
        let mut all: Vec<&Deployment> = inner.deployments.values().collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        (inner.version, all.into_iter().map(Deployment::summary).collect())
    }
}

/// What tells one content of a deployment's record from another: the
/// state's version (every durable change moves it) and the time of the
/// deployment's newest resource sample (samples are kept in memory only and
/// do not move the version).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RecordMark {
    version: u64,
    sampled: Option<DateTime<Utc>>,
}

/// The answer of [`State::deployment_unless`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RecordLookup {
    /// No deployment has that id.
    Missing,
    /// The record is still the one the caller's mark names.
    Unchanged,
    /// The record as of now, and its mark.
    Changed(RecordMark, Box<Deployment>),
}

impl State {
    /// One deployment, unless it is still the one `known` marks: then only
    /// that is said, and nothing is copied while the state is locked.
    pub fn deployment_unless(&self, id: &str, known: Option<RecordMark>) -> RecordLookup {
        let inner = self.lock();
        let Some(d) = inner.deployments.get(id) else { return RecordLookup::Missing };
        let mark = RecordMark { version: inner.version, sampled: d.stats_history.back().map(|s| s.at) };
        if known == Some(mark) {
            return RecordLookup::Unchanged;
        }
        RecordLookup::Changed(mark, Box::new(d.clone()))
    }
}
