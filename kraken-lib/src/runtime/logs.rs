//! A container's output, split into lines in bounded memory (the engine's
//! frames go through [`LineSplitter`]).

use std::collections::VecDeque;

use futures::stream::{BoxStream, StreamExt};

use super::docker::DockerRuntime;
use super::error::map_err;
use super::{LogLine, RuntimeError};
use crate::output::{Line, LineSplitter};

/// A splitter's line as the trait hands it out.
fn log_line(line: Line) -> Result<LogLine, RuntimeError> {
    Ok(LogLine { stream: line.stream.to_string(), line: line.text })
}

/// The stream name and bytes of one output frame.
pub(super) fn log_frame(out: bollard::container::LogOutput) -> (&'static str, bytes::Bytes) {
    use bollard::container::LogOutput as O;
    match out {
        O::StdErr { message } => ("stderr", message),
        O::StdOut { message } | O::Console { message } => ("stdout", message),
        O::StdIn { message } => ("stdin", message),
    }
}
pub(super) fn logs(
    rt: &DockerRuntime,
    id: &str,
    follow: bool,
    since_now: bool,
) -> BoxStream<'static, Result<LogLine, RuntimeError>> {
    let since = if since_now { chrono::Utc::now().timestamp() } else { 0 };
    let options = bollard::container::LogsOptions::<String> {
        follow,
        stdout: true,
        stderr: true,
        since,
        timestamps: false,
        tail: "all".to_string(),
        ..Default::default()
    };
    let frames = rt.docker.logs(id, Some(options));
    let what = format!("container {id}");
    // State: the engine's frames, the splitter, items ready to hand out,
    // and whether the frames have ended.
    let state = (frames.boxed(), LineSplitter::new(), VecDeque::new(), false);
    futures::stream::unfold(state, move |(mut frames, mut splitter, mut ready, mut done)| {
        let what = what.clone();
        async move {
            loop {
                if let Some(item) = ready.pop_front() {
                    return Some((item, (frames, splitter, ready, done)));
                }
                if done {
                    return None;
                }
                match frames.next().await {
                    Some(Ok(frame)) => {
                        let (stream, bytes) = log_frame(frame);
                        ready.extend(splitter.push(stream, &bytes).into_iter().map(log_line));
                    }
                    Some(Err(e)) => {
                        // Hand out the lines received so far, then the error.
                        done = true;
                        ready.extend(splitter.finish().into_iter().map(log_line));
                        ready.push_back(Err(map_err(&what, e)));
                    }
                    None => {
                        done = true;
                        ready.extend(splitter.finish().into_iter().map(log_line));
                    }
                }
            }
        }
    })
    .boxed()
}
