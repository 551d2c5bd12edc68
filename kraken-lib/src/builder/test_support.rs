//! Small apps in temporary directories, for the builders' tests.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use crate::shipwreck::{AppSection, ConfigSection, Manifest};

/// A temporary checkout holding `files` (relative path, content).
pub(crate) fn app(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (rel, content) in files {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    dir
}

/// A manifest with the given port, lang and run command.
pub(crate) fn manifest(port: u16, lang: Option<&str>, run: Option<&str>) -> Manifest {
    Manifest {
        app: AppSection { name: "demo".into(), version: None, author: None, endpoint: None },
        config: ConfigSection {
            port,
            lang: lang.map(str::to_string),
            run: run.map(str::to_string),
            test: None,
            dockerfile: None,
            root: None,
            health: None,
            env: BTreeMap::new(),
        },
    }
}
