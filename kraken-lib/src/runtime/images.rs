//! The images Kraken built: listed by node, removed.

use super::docker::{managed_filter, DockerRuntime};
use super::error::{is_not_found, map_err};
use super::{ManagedImage, RuntimeError};

pub(super) async fn list_images(
    rt: &DockerRuntime,
    node: Option<String>,
) -> Result<Vec<ManagedImage>, RuntimeError> {
    let options = bollard::image::ListImagesOptions::<String> {
        all: false,
        filters: managed_filter(node.as_deref()),
        digests: false,
    };
    let images = rt.docker.list_images(Some(options)).await.map_err(|e| map_err("listing images", e))?;
    Ok(images
        .into_iter()
        .map(|i| ManagedImage {
            id: i.id,
            tags: i.repo_tags.into_iter().filter(|t| t != "<none>:<none>").collect(),
            labels: i.labels.into_iter().collect(),
        })
        .collect())
}

pub(super) async fn remove_image(rt: &DockerRuntime, image: &str) -> Result<(), RuntimeError> {
    let options = bollard::image::RemoveImageOptions { force: false, noprune: false };
    match rt.docker.remove_image(image, Some(options), None).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(map_err(&format!("removing image {image}"), e)),
    }
}
