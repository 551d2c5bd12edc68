//! The images Kraken built: named so that the name says whose they are,
//! listed by node, removed.
//!
//! Images are built without labels (the engine's classic builder turns build
//! labels into one more build step, an intermediate container of its own):
//! an app's image is recognised by its tag instead, [`AppImage`]
//! `kraken/<node>/<app>:<deployment>-<generation>`. Images built by earlier
//! versions carry the labels [`LABEL_MANAGED`] and [`LABEL_NODE`] and are
//! still recognised by them, so an agent upgraded in place finds and cleans
//! its old images too.

use std::collections::HashMap;

use super::docker::DockerRuntime;
use super::error::{is_not_found, map_err};
use super::{ManagedImage, RuntimeError, LABEL_MANAGED, LABEL_NODE};

/// The first path component of every app image Kraken builds.
const REPOSITORY_PREFIX: &str = "kraken";

/// Marks a node id written in hex because it cannot name a path component of
/// an image repository as it is.
const ENCODED_MARK: &str = "x--";

/// What an app image's tag says: which node built it, for which app,
/// deployment and generation.
///
/// # Examples
///
/// ```
/// use kraken_lib::runtime::AppImage;
///
/// let image = AppImage {
///     node: "n0a1b2c3d4e".into(),
///     app: "hello".into(),
///     deployment: "5f3e2a1b0c9d".into(),
///     generation: 2,
/// };
/// assert_eq!(image.tag(), "kraken/n0a1b2c3d4e/hello:5f3e2a1b0c9d-2");
/// assert_eq!(AppImage::parse(&image.tag()), Some(image));
/// assert_eq!(AppImage::parse("kraken/hello:5f3e2a1b0c9d-2"), None, "not a tag this version gives");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppImage {
    /// The id of the node that built it.
    pub node: String,
    /// The app's name (from its manifest).
    pub app: String,
    /// The deployment it was built for.
    pub deployment: String,
    /// The deployment's generation it was built for.
    pub generation: u64,
}

impl AppImage {
    /// The image's tag: `kraken/<node>/<app>:<deployment>-<generation>`. A
    /// node id that cannot be a repository path component as it is (which
    /// allows lowercase letters, digits and single separators) is written as
    /// `x--` and its bytes in hex.
    pub fn tag(&self) -> String {
        format!(
            "{REPOSITORY_PREFIX}/{}/{}:{}-{}",
            encode_component(&self.node),
            self.app,
            self.deployment,
            self.generation
        )
    }

    /// Reads a tag made by [`AppImage::tag`]; `None` for any other name.
    pub fn parse(tag: &str) -> Option<Self> {
        let (repository, version) = tag.rsplit_once(':')?;
        let mut parts = repository.split('/');
        let (prefix, node, app) = (parts.next()?, parts.next()?, parts.next()?);
        if prefix != REPOSITORY_PREFIX || parts.next().is_some() || app.is_empty() {
            return None;
        }
        let (deployment, generation) = version.rsplit_once('-')?;
        if deployment.is_empty() {
            return None;
        }
        Some(Self {
            node: decode_component(node)?,
            app: app.to_string(),
            deployment: deployment.to_string(),
            generation: generation.parse().ok()?,
        })
    }
}

/// Whether `s` can be a path component of an image repository (`[a-z0-9]+`
/// joined by `.`, `_`, `__` or runs of `-`).
fn is_component(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let separators_ok = s
        .split(|c: char| alnum(c))
        .filter(|sep| !sep.is_empty())
        .all(|sep| matches!(sep, "." | "_" | "__") || sep.chars().all(|c| c == '-'));
    s.starts_with(alnum)
        && s.ends_with(alnum)
        && s.chars().all(|c| alnum(c) || matches!(c, '.' | '_' | '-'))
        && separators_ok
}

/// Whether `s` can be a path component as it is and does not look like an
/// encoded one.
fn is_plain_component(s: &str) -> bool {
    is_component(s) && !s.starts_with(ENCODED_MARK)
}

fn encode_component(s: &str) -> String {
    if is_plain_component(s) {
        s.to_string()
    } else {
        format!("{ENCODED_MARK}{}", hex::encode(s))
    }
}

fn decode_component(s: &str) -> Option<String> {
    match s.strip_prefix(ENCODED_MARK) {
        Some(encoded) => String::from_utf8(hex::decode(encoded).ok()?).ok(),
        None => Some(s.to_string()),
    }
}

/// The node an image on the engine was built by, if Kraken built it: from
/// its tag, or (images of earlier versions) from its labels.
fn built_by(tags: &[String], labels: &std::collections::HashMap<String, String>) -> Option<String> {
    if let Some(image) = tags.iter().find_map(|t| AppImage::parse(t)) {
        return Some(image.node);
    }
    if labels.get(LABEL_MANAGED).map(String::as_str) == Some("true") {
        return Some(labels.get(LABEL_NODE).cloned().unwrap_or_default());
    }
    None
}

pub(super) async fn list_images(
    rt: &DockerRuntime,
    node: Option<String>,
) -> Result<Vec<ManagedImage>, RuntimeError> {
    // The engine filters: images of this version by their repository (all
    // Kraken's, or the node's when given; names are matched after the
    // node id is encoded as in the tag), those of earlier versions by their
    // labels. Listing every image instead would read the whole engine's
    // list (hundreds of images on a machine that builds often).
    let repository = match &node {
        Some(node) => format!("{REPOSITORY_PREFIX}/{}/*", encode_component(node)),
        None => format!("{REPOSITORY_PREFIX}/*/*"),
    };
    let by_tag = HashMap::from([("reference".to_string(), vec![repository])]);
    let by_labels = super::docker::managed_filter(node.as_deref());
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for filters in [by_tag, by_labels] {
        let options = bollard::image::ListImagesOptions::<String> { filters, ..Default::default() };
        let images = rt.docker.list_images(Some(options)).await.map_err(|e| map_err("listing images", e))?;
        for i in images {
            let tags: Vec<String> = i.repo_tags.into_iter().filter(|t| t != "<none>:<none>").collect();
            let Some(by) = built_by(&tags, &i.labels) else { continue };
            if node.as_ref().is_some_and(|wanted| *wanted != by) || !seen.insert(i.id.clone()) {
                continue;
            }
            out.push(ManagedImage { id: i.id, tags, labels: i.labels.into_iter().collect() });
        }
    }
    Ok(out)
}

pub(super) async fn remove_image(rt: &DockerRuntime, image: &str) -> Result<(), RuntimeError> {
    let options = bollard::image::RemoveImageOptions { force: false, noprune: false };
    match rt.docker.remove_image(image, Some(options), None).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(map_err(&format!("removing image {image}"), e)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn image(node: &str) -> AppImage {
        AppImage { node: node.into(), app: "my-app".into(), deployment: "d00d".into(), generation: 7 }
    }

    #[test]
    fn a_tag_reads_back_as_what_it_was_made_from() {
        for node in ["n0123456789", "node-a", "Node A", "x--41", "a..b", "-lead", "ü"] {
            let tag = image(node).tag();
            assert_eq!(AppImage::parse(&tag), Some(image(node)), "{node:?} → {tag}");
            let repository = tag.rsplit_once(':').unwrap().0;
            assert!(repository.split('/').all(is_component), "{tag} is a valid repository");
        }
        assert_eq!(image("n0123456789").tag(), "kraken/n0123456789/my-app:d00d-7");
        assert_eq!(image("Node A").tag(), "kraken/x--4e6f64652041/my-app:d00d-7");
    }

    #[test]
    fn names_kraken_did_not_give_are_not_read_as_its_images() {
        for tag in [
            "kraken/hello:d00d-1",
            "kraken/n1/hello:latest",
            "kraken/n1/hello:d00d-",
            "kraken/n1/hello:-3",
            "other/n1/hello:d00d-1",
            "kraken/n1/hello/extra:d00d-1",
            "kraken/x--zz/hello:d00d-1",
            "busybox:latest",
        ] {
            assert_eq!(AppImage::parse(tag), None, "{tag}");
        }
    }

    #[test]
    fn images_are_told_by_their_tag_or_by_the_labels_of_earlier_versions() {
        let none = HashMap::new();
        let tags = vec!["busybox:latest".to_string(), image("n1").tag()];
        assert_eq!(built_by(&tags, &none).as_deref(), Some("n1"));
        let labelled = HashMap::from([
            (LABEL_MANAGED.to_string(), "true".to_string()),
            (LABEL_NODE.into(), "n2".into()),
        ]);
        assert_eq!(built_by(&["kraken/old:d-1".to_string()], &labelled).as_deref(), Some("n2"));
        assert_eq!(built_by(&[], &labelled).as_deref(), Some("n2"), "an untagged labelled image");
        assert_eq!(built_by(&["kraken/old:d-1".to_string()], &none), None);
    }
}
