//! [`BaseImages`]: the images builders start `FROM`, as configuration.
//!
//! Each builder has a key (`node`, `python`, `python3.6`, `static`) mapped to
//! an image reference that may hold `{version}`, replaced by the version the
//! app pins (or the key's default version when it pins none). The defaults
//! are the official slim images; [`BaseImages::uniform`] points every key at
//! one image (e.g. a locally made image, whatever version an app asks for).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::BuildError;

/// Base images the built-in builders start `FROM`, by key, with the version
/// used when an app pins none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseImages {
    /// Key → image reference, possibly with `{version}`.
    images: BTreeMap<String, String>,
    /// Key → the version used when the app pins none.
    default_versions: BTreeMap<String, String>,
}

/// The placeholder replaced by the version in an image reference.
pub const VERSION_PLACEHOLDER: &str = "{version}";

impl BaseImages {
    /// The public official images: what a machine with internet access pulls.
    /// `node:{version}-bookworm-slim` (default Node 22),
    /// `python:{version}-slim` (default Python 3.13), `python:3.6-slim`, `busybox:stable`.
    pub fn defaults() -> Self {
        let mut images = Self { images: BTreeMap::new(), default_versions: BTreeMap::new() };
        images.set("node", "node:{version}-bookworm-slim");
        images.set_default_version("node", "22");
        images.set("python", "python:{version}-slim");
        images.set_default_version("python", "3.13");
        images.set("python3.6", "python:3.6-slim");
        images.set_default_version("python3.6", "3.6");
        images.set("static", "busybox:stable");
        images
    }

    /// Every built-in builder pointed at the one `image` (for example a locally
    /// made image that has `nodejs`, `npm`, `python3` and `busybox`), whatever
    /// version an app pins.
    pub fn uniform(image: &str) -> Self {
        let mut images = Self::defaults();
        for v in images.images.values_mut() {
            *v = image.to_string();
        }
        images
    }

    /// The image (or template) configured for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.images.get(key).map(String::as_str)
    }

    /// Sets the image for `key`; `{version}` in it is replaced by the app's version.
    pub fn set(&mut self, key: &str, image: &str) {
        self.images.insert(key.to_string(), image.to_string());
    }

    /// Removes the image of `key`.
    pub fn remove(&mut self, key: &str) {
        self.images.remove(key);
    }

    /// The version used for `key` when the app pins none.
    pub fn default_version(&self, key: &str) -> Option<&str> {
        self.default_versions.get(key).map(String::as_str)
    }

    /// Sets the version used for `key` when the app pins none.
    pub fn set_default_version(&mut self, key: &str, version: &str) {
        self.default_versions.insert(key.to_string(), version.to_string());
    }

    /// The image for the key `key`, or an error that says which key to configure.
    ///
    /// # Errors
    /// [`BuildError::Invalid`] when no non-empty image is configured for `key`.
    pub fn require(&self, key: &str) -> Result<&str, BuildError> {
        match self.get(key) {
            Some(image) if !image.trim().is_empty() => Ok(image),
            _ => Err(BuildError::Invalid(format!(
                "no base image is configured for `{key}`; set one in the node's base images \
                 (BaseImages::set(\"{key}\", \"<image>\")), e.g. the image {}",
                Self::defaults().get(key).unwrap_or("that has the language's runtime")
            ))),
        }
    }

    /// The reason of a version choice, completed when the image for `key` is
    /// the same for every version (so the pin does not change it).
    pub fn version_reason(&self, key: &str, image: &str, reason: &str) -> String {
        match self.get(key) {
            Some(template) if !template.contains(VERSION_PLACEHOLDER) => {
                format!("{reason}; {image} is the image configured for every version")
            }
            _ => reason.to_string(),
        }
    }

    /// The image for `key` at `version` (`{version}` replaced).
    ///
    /// # Errors
    /// As [`BaseImages::require`].
    pub fn image_for(&self, key: &str, version: &str) -> Result<String, BuildError> {
        Ok(self.require(key)?.replace(VERSION_PLACEHOLDER, version))
    }
}

impl Default for BaseImages {
    fn default() -> Self {
        Self::defaults()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_official_slim_images_by_version() {
        let images = BaseImages::defaults();
        assert_eq!(images.image_for("node", "18").unwrap(), "node:18-bookworm-slim");
        assert_eq!(images.image_for("python", "3.11").unwrap(), "python:3.11-slim");
        assert_eq!(images.image_for("python3.6", "3.6").unwrap(), "python:3.6-slim");
        assert_eq!(images.image_for("static", "").unwrap(), "busybox:stable");
        assert_eq!(images.default_version("node"), Some("22"));
        assert_eq!(images.default_version("python"), Some("3.13"));
    }

    #[test]
    fn uniform_points_every_version_at_one_image() {
        let images = BaseImages::uniform("local/base:1");
        for (key, version) in [("node", "18"), ("node", "24"), ("python", "3.9"), ("static", "")] {
            assert_eq!(images.image_for(key, version).unwrap(), "local/base:1");
        }
        assert_eq!(
            images.version_reason("node", "local/base:1", "x asks for 18: Node 18"),
            "x asks for 18: Node 18; local/base:1 is the image configured for every version"
        );
        let defaults = BaseImages::defaults();
        assert_eq!(defaults.version_reason("node", "node:18-bookworm-slim", "why"), "why");
    }

    #[test]
    fn missing_image_names_the_key() {
        let mut images = BaseImages::defaults();
        images.remove("node");
        let err = images.image_for("node", "20").unwrap_err().to_string();
        assert!(err.contains("no base image is configured for `node`"), "{err}");
        assert!(err.contains("BaseImages::set(\"node\""), "{err}");
        images.set("node", " ");
        assert!(images.require("node").is_err());
    }
}
