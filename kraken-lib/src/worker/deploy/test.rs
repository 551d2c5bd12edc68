//! The test phase: the manifest's `test` command run in a throw-away
//! container of the new image; a failing test removes the image.

use std::collections::BTreeMap;

use super::{Failed, Job};
use crate::deployment::Status;

/// The app's environment: the manifest's variables and `PORT`, the port the
/// manifest says the app listens on.
pub(super) fn app_env(job: &Job<'_>) -> BTreeMap<String, String> {
    let config = &job.spec.manifest.config;
    let mut env = config.env.clone();
    env.insert("PORT".to_string(), config.port.to_string());
    env
}

/// Runs the manifest's test command, if it has one.
pub(super) async fn test(job: &Job<'_>) -> Result<(), Failed> {
    let Some(test) = &job.spec.manifest.config.test else { return Ok(()) };
    job.report(Status::TestingDeployment, format!("running the test command `{test}`")).await;
    let shared = job.shared;
    let ran = shared
        .runtime
        .run_to_completion(
            &job.tag,
            test,
            &app_env(job),
            &super::build::labels(job),
            shared.node.config.test_timeout,
        )
        .await;
    let (code, output) = match ran {
        Ok(r) => r,
        Err(e) => {
            job.remove_image(&job.tag).await;
            return Err(Failed(format!("could not run the test command: {e}")));
        }
    };
    for line in output.lines() {
        job.sink.send("build", line.to_string());
    }
    if code != 0 {
        job.remove_image(&job.tag).await;
        return Err(Failed(format!("the test command `{test}` failed with exit code {code}")));
    }
    Ok(())
}
