//! A container's output, split into lines in bounded memory (the engine's
//! frames go through [`LineSplitter`]).
//!
//! [`follow_after`] asks the engine for its timestamps too: every message
//! (a line, or a piece of a line longer than the engine's 16 KiB) comes with
//! one, of fixed width. The engine keeps stdout and stderr messages in the
//! order they reached its log file, which is not always the order of their
//! timestamps (each stream is stamped on its own), so a follower started
//! again after a position reads from a little before it (the engine's
//! `since` takes whole seconds) and skips every message up to and including
//! the one at the position: it gets exactly the messages that came after it.
//! Should that message be gone (the engine rotated its files away meanwhile),
//! the follower gives up skipping at the first message stamped
//! [`LOOK_BACK`] seconds after it.

use std::collections::VecDeque;

use futures::stream::{BoxStream, StreamExt};

use super::docker::DockerRuntime;
use super::error::map_err;
use super::{LogLine, LogPosition, RuntimeError};
use crate::output::{Line, LineSplitter};

/// A splitter's line as the trait hands it out.
fn log_line(line: Line) -> Result<LogLine, RuntimeError> {
    Ok(LogLine { stream: line.stream.into(), line: line.text })
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

/// The length of the engine's timestamp (`2006-01-02T15:04:05.000000000Z`).
const STAMP: usize = 30;

/// How many seconds before a position a follower starts reading, and after
/// it stops looking for the position's own message.
const LOOK_BACK: i64 = 2;

/// Splits the engine's `<timestamp> <message>` frame; `None` when the frame
/// does not start with a timestamp.
fn stamped(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let fits = bytes.len() > STAMP && bytes[STAMP] == b' ' && bytes[STAMP - 1] == b'Z' && bytes[10] == b'T';
    fits.then(|| (&bytes[..STAMP], &bytes[STAMP + 1..]))
}

/// A follower's progress through the engine's messages.
struct Follow {
    splitter: LineSplitter,
    /// The position of the last message read.
    at: Option<LogPosition>,
    /// The position of the last line handed out (where a later line that
    /// the same message does not end would resume).
    ended: Option<LogPosition>,
    /// Messages up to this position are skipped (read already).
    after: Option<LogPosition>,
    ready: VecDeque<Result<(LogLine, LogPosition), RuntimeError>>,
    done: bool,
}

impl Follow {
    /// A follower that hands out the lines after `after` (all when `None`).
    fn new(after: Option<LogPosition>) -> Self {
        Follow {
            splitter: LineSplitter::new(),
            at: None,
            ended: after.clone(),
            after,
            ready: VecDeque::new(),
            done: false,
        }
    }

    /// Takes in one frame of the engine's stream.
    fn frame(&mut self, stream: &'static str, bytes: &[u8]) {
        let Some((stamp, message)) = stamped(bytes) else {
            self.lines(stream, bytes);
            return;
        };
        let at = match &self.at {
            Some(p) if p.at.as_bytes() == stamp => LogPosition { at: p.at.clone(), nth: p.nth + 1 },
            _ => LogPosition { at: String::from_utf8_lossy(stamp).into(), nth: 1 },
        };
        self.at = Some(at.clone());
        if let Some(after) = &self.after {
            if at == *after {
                // The last message read before: what follows is new.
                self.after = None;
                return;
            }
            if at.at < after.at || at.second() <= after.second() + LOOK_BACK {
                return;
            }
            tracing::warn!(position = %after.to_text(), "the log's position is gone from the engine's files; following from here");
            self.after = None;
        }
        self.lines(stream, message);
    }

    /// Splits `bytes` into lines: the last line they end stands at the
    /// current message, any before it at the line handed out before (so a
    /// restart there repeats rather than skips them).
    fn lines(&mut self, stream: &'static str, bytes: &[u8]) {
        let lines = self.splitter.push(stream, bytes);
        self.hand_out(lines);
    }

    fn hand_out(&mut self, lines: Vec<Line>) {
        let count = lines.len();
        for (i, line) in lines.into_iter().enumerate() {
            let at = if i + 1 == count { self.at.clone() } else { self.ended.clone() };
            let at =
                at.or_else(|| self.ended.clone()).unwrap_or_else(|| LogPosition { at: "".into(), nth: 0 });
            self.ended = Some(at.clone());
            self.ready.push_back(log_line(line).map(|l| (l, at)));
        }
    }
}

pub(super) fn follow_after(
    rt: &DockerRuntime,
    id: &str,
    after: Option<LogPosition>,
) -> BoxStream<'static, Result<(LogLine, LogPosition), RuntimeError>> {
    let options = bollard::container::LogsOptions::<String> {
        follow: true,
        stdout: true,
        stderr: true,
        since: after.as_ref().map_or(0, |p| (p.second() - LOOK_BACK).max(0)),
        timestamps: true,
        tail: "all".to_string(),
        ..Default::default()
    };
    let frames = rt.docker.logs(id, Some(options)).boxed();
    let what = format!("container {id}");
    let follow = Follow::new(after);
    futures::stream::unfold((frames, follow), move |(mut frames, mut follow)| {
        let what = what.clone();
        async move {
            loop {
                if let Some(item) = follow.ready.pop_front() {
                    return Some((item, (frames, follow)));
                }
                if follow.done {
                    return None;
                }
                match frames.next().await {
                    Some(Ok(frame)) => {
                        let (stream, bytes) = log_frame(frame);
                        follow.frame(stream, &bytes);
                    }
                    Some(Err(e)) => {
                        follow.done = true;
                        let rest = follow.splitter.finish();
                        follow.hand_out(rest);
                        follow.ready.push_back(Err(map_err(&what, e)));
                    }
                    None => {
                        follow.done = true;
                        let rest = follow.splitter.finish();
                        follow.hand_out(rest);
                    }
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn follow(after: Option<LogPosition>) -> Follow {
        Follow::new(after)
    }

    fn texts(f: &mut Follow) -> Vec<(String, u32, String)> {
        f.ready
            .drain(..)
            .map(|r| r.map(|(l, p)| (p.at.to_string(), p.nth, l.line)))
            .collect::<Result<_, _>>()
            .unwrap_or_default()
    }

    const T1: &str = "2026-01-02T03:04:05.000000001Z";
    const T2: &str = "2026-01-02T03:04:05.100000000Z";
    const T0: &str = "2026-01-02T03:04:04.900000000Z";
    const T9: &str = "2026-01-02T03:04:09.000000000Z";

    #[test]
    fn messages_with_one_timestamp_are_told_apart_by_their_count() {
        let mut f = follow(None);
        for m in ["a\n", "b\n"] {
            f.frame("stdout", format!("{T1} {m}").as_bytes());
        }
        f.frame("stdout", format!("{T2} c\n").as_bytes());
        assert_eq!(
            texts(&mut f),
            [(T1.into(), 1, "a".into()), (T1.into(), 2, "b".into()), (T2.into(), 1, "c".into())]
        );
    }

    #[test]
    fn following_after_a_position_skips_exactly_what_came_up_to_it() {
        let after = LogPosition { at: T1.into(), nth: 2 };
        let mut f = follow(Some(after));
        for m in ["a\n", "b\n", "c\n"] {
            f.frame("stdout", format!("{T1} {m}").as_bytes());
        }
        f.frame("stderr", format!("{T2} d\n").as_bytes());
        assert_eq!(texts(&mut f), [(T1.into(), 3, "c".into()), (T2.into(), 1, "d".into())]);
    }

    #[test]
    fn messages_stamped_out_of_order_are_skipped_by_where_they_stand_not_by_their_time() {
        // stderr's message stamped later reached the file before stdout's.
        let mut f = follow(Some(LogPosition { at: T1.into(), nth: 1 }));
        f.frame("stderr", format!("{T2} sent before\n").as_bytes());
        f.frame("stdout", format!("{T1} the last one sent\n").as_bytes());
        f.frame("stderr", format!("{T0} stamped earlier, came later\n").as_bytes());
        assert_eq!(texts(&mut f), [(T0.into(), 1, "stamped earlier, came later".into())]);
    }

    #[test]
    fn a_position_gone_from_the_engine_is_given_up_a_few_seconds_after_it() {
        let mut f = follow(Some(LogPosition { at: T1.into(), nth: 1 }));
        f.frame("stdout", format!("{T2} soon after\n").as_bytes());
        f.frame("stdout", format!("{T9} much later\n").as_bytes());
        assert_eq!(texts(&mut f), [(T9.into(), 1, "much later".into())]);
    }

    #[test]
    fn a_line_in_pieces_stands_at_its_last_piece() {
        let mut f = follow(None);
        f.frame("stdout", format!("{T1} long ").as_bytes());
        assert!(texts(&mut f).is_empty());
        f.frame("stdout", format!("{T2} line\n").as_bytes());
        assert_eq!(texts(&mut f), [(T2.into(), 1, "long line".into())]);
    }

    #[test]
    fn positions_survive_their_text_form_and_order_as_time() {
        let p = LogPosition { at: T1.into(), nth: 7 };
        assert_eq!(LogPosition::from_text(&p.to_text()), Some(p.clone()));
        assert_eq!(LogPosition::from_text("yesterday 3"), None);
        assert!(p < LogPosition { at: T2.into(), nth: 1 });
        assert!(LogPosition::now() > LogPosition { at: T2.into(), nth: 1 });
        assert_eq!(p.second(), 1_767_323_045);
    }
}
