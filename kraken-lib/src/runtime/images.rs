//! The images Kraken built: listed by node, removed.

use super::docker::DockerRuntime;
use super::error::{is_not_found, map_err};
use super::{ManagedImage, RuntimeError, LABEL_MANAGED, LABEL_NODE};

pub(super) async fn list_images(
    rt: &DockerRuntime,
    node: Option<String>,
) -> Result<Vec<ManagedImage>, RuntimeError> {
    let mut label_filters = vec![format!("{LABEL_MANAGED}=true")];
    if let Some(node) = &node {
        label_filters.push(format!("{LABEL_NODE}={node}"));
    }
    let options = bollard::image::ListImagesOptions::<String> {
        all: false,
        filters: [("label".to_string(), label_filters)].into_iter().collect(),
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
