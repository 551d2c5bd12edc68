//! One back-off for everything Kraken tries again: a pause that starts small
//! and doubles up to a ceiling, optionally jittered so that many clients do
//! not retry in step, and [`until_deadline`] for "try until it works or the
//! time is up".

use std::future::Future;
use std::time::Duration;

/// Pauses between attempts: `min`, then doubling up to `max`.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use kraken_lib::retry::Backoff;
///
/// let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(300));
/// assert_eq!(backoff.next_pause(), Duration::from_millis(100));
/// assert_eq!(backoff.next_pause(), Duration::from_millis(200));
/// assert_eq!(backoff.next_pause(), Duration::from_millis(300));
/// backoff.reset();
/// assert_eq!(backoff.next_pause(), Duration::from_millis(100));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A back-off from `min` doubling to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self { min, max: max.max(min), next: min }
    }

    /// The pause to make now; the next one is twice as long (at most `max`).
    pub fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(self.max);
        pause
    }

    /// The pause [`next_pause`](Self::next_pause) would give, without
    /// advancing.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// The next pause, stretched by a random factor between 0.5 and 1.5 (at
    /// most `max`), so that many clients do not retry in step.
    pub fn next_jittered(&mut self) -> Duration {
        let pause = self.next_pause();
        let mut bytes = [0u8; 2];
        let factor = match getrandom::getrandom(&mut bytes) {
            Ok(()) => 0.5 + f64::from(u16::from_le_bytes(bytes)) / f64::from(u16::MAX),
            Err(_) => 1.0,
        };
        pause.mul_f64(factor).min(self.max)
    }

    /// Starts again from `min` (after a success).
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Calls `attempt` until it succeeds or `patience` has passed, pausing with a
/// [`Backoff`] from 250 ms to 2 s between attempts; returns the success or
/// the last error.
///
/// # Errors
/// The last attempt's error once `patience` has passed.
///
/// # Examples
/// ```
/// # tokio_test_block_on(async {
/// use std::time::Duration;
/// let mut calls = 0;
/// let answer = kraken_lib::retry::until_deadline(Duration::from_secs(5), || {
///     calls += 1;
///     let ready = calls == 2;
///     async move { if ready { Ok(42) } else { Err("not yet") } }
/// })
/// .await;
/// assert_eq!(answer, Ok(42));
/// # });
/// # fn tokio_test_block_on(f: impl std::future::Future<Output = ()>) {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
pub async fn until_deadline<T, E, F, Fut>(patience: Duration, mut attempt: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let deadline = tokio::time::Instant::now() + patience;
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(2));
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(e) => tracing::debug!(error = %e, "not ready yet; trying again"),
        }
        let pause = backoff.next_pause().min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_and_one_and_a_half_and_the_ceiling() {
        for _ in 0..100 {
            let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(120));
            let first = b.next_jittered();
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(120), "{first:?}");
        }
    }

    #[tokio::test]
    async fn until_deadline_gives_the_last_error_when_time_is_up() {
        let mut calls = 0u32;
        let result: Result<(), String> = until_deadline(Duration::from_millis(600), || {
            calls += 1;
            let n = calls;
            async move { Err(format!("attempt {n}")) }
        })
        .await;
        let error = result.expect_err("never succeeds");
        assert_eq!(error, format!("attempt {calls}"));
        assert!(calls >= 2, "tried again before giving up; tried {calls} times");
    }
}
