//! [`BuildPlan`]: what a builder decided, as data. The base image and each
//! install, build and start step carry the command and the reason it was
//! chosen; with them come the Dockerfile text and the build context. The
//! `validate` call shows all of it, the worker builds it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One decision of a plan: a command (or an image) and why it was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Step {
    /// The shell command, or for a base image the image reference.
    pub command: String,
    /// A sentence a person can read: what in the app led to it.
    pub reason: String,
}

impl Step {
    /// A step running `command` because of `reason`.
    pub fn new(command: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { command: command.into(), reason: reason.into() }
    }
}

/// What a builder produces: the decisions (base image, install, build and
/// start steps, each with its reason), the Dockerfile text written from them
/// and the directory sent as the build context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BuildPlan {
    /// The builder that made the plan.
    pub builder: String,
    /// The image the app's image starts `FROM`, and why that one.
    pub base_image: Step,
    /// Steps that install the app's dependencies, in order.
    pub install: Vec<Step>,
    /// Steps that build the app after its source is in place, in order.
    pub build: Vec<Step>,
    /// The command the container starts with, and why (`None` when an own
    /// Dockerfile's `CMD` decides).
    pub start: Option<Step>,
    /// The build context as a folder of the repository (`.` for its root).
    pub context: String,
    /// The directory whose contents form the Docker build context (`.git` is left out).
    #[serde(skip)]
    pub context_dir: PathBuf,
    /// The Dockerfile, as text.
    pub dockerfile: String,
    /// Whether the Dockerfile is the app's own, used exactly as written
    /// (nothing is added to it for the node's build settings).
    #[serde(default)]
    pub verbatim: bool,
    /// Files added to the build context beside the app's (name → bytes), e.g.
    /// the node's CA bundle for builds. Never shown.
    #[serde(skip)]
    pub files: BTreeMap<String, Vec<u8>>,
    /// Build arguments (e.g. the agent's proxy variables). Never shown: a proxy
    /// URL may hold a password.
    #[serde(skip)]
    pub build_args: BTreeMap<String, String>,
}

impl BuildPlan {
    /// A plan of `builder` building `dockerfile` in `context_dir`, on
    /// `base_image`, with no steps recorded yet.
    pub fn new(
        builder: impl Into<String>,
        base_image: Step,
        context_dir: impl Into<PathBuf>,
        dockerfile: impl Into<String>,
    ) -> Self {
        Self {
            builder: builder.into(),
            base_image,
            install: Vec::new(),
            build: Vec::new(),
            start: None,
            context: ".".to_string(),
            context_dir: context_dir.into(),
            dockerfile: dockerfile.into(),
            verbatim: false,
            files: BTreeMap::new(),
            build_args: BTreeMap::new(),
        }
    }

    /// Every step in the order it runs, with its kind (`install`, `build`,
    /// `start`), for people.
    pub fn steps(&self) -> Vec<(&'static str, &Step)> {
        let mut out: Vec<(&'static str, &Step)> = Vec::new();
        out.extend(self.install.iter().map(|s| ("install", s)));
        out.extend(self.build.iter().map(|s| ("build", s)));
        out.extend(self.start.iter().map(|s| ("start", s)));
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn serialised_without_local_paths_files_or_build_args() {
        let mut plan = BuildPlan::new("node", Step::new("node:22", "default"), "/tmp/x", "FROM node:22\n");
        plan.install.push(Step::new("npm ci", "package-lock.json"));
        plan.start = Some(Step::new("npm start", "scripts.start"));
        plan.files.insert("ca.pem".into(), b"secret-ish".to_vec());
        plan.build_args.insert("HTTPS_PROXY".into(), "http://user:pw@proxy:3128".into());
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["base_image"]["command"], "node:22");
        assert_eq!(json["install"][0]["reason"], "package-lock.json");
        assert_eq!(json["context"], ".");
        let text = json.to_string();
        assert!(!text.contains("/tmp/x") && !text.contains("pw@proxy") && !text.contains("ca.pem"), "{text}");
        let kinds: Vec<&str> = plan.steps().iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, ["install", "start"]);
    }
}
