//! The query of the list call, `?limit=&after=`, and its cursor: the list is
//! ordered by when each deployment was requested, then by id, and the cursor
//! names the last deployment of the previous page by both, so the next page
//! is right even when that deployment has gone meanwhile.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::error::ApiError;

/// How many deployments a page holds when the query does not say.
pub const DEFAULT_PAGE: usize = 100;

/// The most deployments one page may hold.
pub const MAX_PAGE: usize = 1000;

/// What a cursor looks like, as the OpenAPI document says it (the
/// attribute on [`ListQuery::after`] repeats it; a test compares the two).
#[cfg(test)]
const CURSOR_PATTERN: &str = r"^[0-9]{1,12}\.[0-9]{9}_[0-9A-Za-z-]{1,64}$";

/// The query of the list call, as sent (both read as text, so a wrong value
/// gets Kraken's own message rather than a parser's).
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// How many deployments the page holds (default 100, at most 1000).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// The `next` of the previous page: the page starts after the
    /// deployment it names.
    #[param(value_type = Option<String>, pattern = r"^[0-9]{1,12}\.[0-9]{9}_[0-9A-Za-z-]{1,64}$")]
    pub after: Option<String>,
}

/// Where a page starts: after the deployment requested at `at` with `id`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Cursor {
    /// When that deployment was requested.
    pub(super) at: DateTime<Utc>,
    /// Its id.
    pub(super) id: String,
}

impl Cursor {
    /// The cursor naming the deployment requested at `at` with `id`:
    /// `<seconds>.<nanoseconds>_<id>`.
    pub(super) fn encode(at: &DateTime<Utc>, id: &str) -> String {
        format!("{}.{:09}_{id}", at.timestamp(), at.timestamp_subsec_nanos())
    }

    /// Reads a cursor made by [`Cursor::encode`]; `None` when `text` is not one.
    fn parse(text: &str) -> Option<Self> {
        let (time, id) = text.split_once('_')?;
        let (secs, nanos) = time.split_once('.')?;
        let digits =
            |s: &str, max: usize| !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit());
        let id_ok =
            !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !(digits(secs, 12) && nanos.len() == 9 && digits(nanos, 9) && id_ok) {
            return None;
        }
        let at = DateTime::from_timestamp(secs.parse().ok()?, nanos.parse().ok()?)?;
        Some(Self { at, id: id.to_string() })
    }
}

/// A checked query: the page size and where the page starts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct PageRequest {
    /// How many deployments, 1 to [`MAX_PAGE`].
    pub(super) limit: usize,
    /// After which deployment; `None` for the first page.
    pub(super) after: Option<Cursor>,
}

impl ListQuery {
    /// Checks the query.
    ///
    /// # Errors
    /// A 400 saying which value is wrong and what would be right.
    pub(super) fn check(&self) -> Result<PageRequest, ApiError> {
        let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
        let limit = match self.limit.as_deref() {
            None => DEFAULT_PAGE,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if text.bytes().all(|b| b.is_ascii_digit()) && (1..=MAX_PAGE).contains(&n) => n,
                _ => {
                    return Err(bad(format!(
                        "limit `{}` is not a page size; ask for a whole number from 1 to {MAX_PAGE} \
                         (without a limit a page holds {DEFAULT_PAGE})",
                        shown(text)
                    )))
                }
            },
        };
        let after = match self.after.as_deref() {
            None => None,
            Some(text) => Some(Cursor::parse(text).ok_or_else(|| {
                bad(format!(
                    "after `{}` is not a cursor of this list; pass the `next` of the previous page as it \
                     was given (it looks like `1764150000.123456789_3f2a9c0d1e4b`), or leave `after` out \
                     for the first page",
                    shown(text)
                ))
            })?),
        };
        Ok(PageRequest { limit, after })
    }
}

/// `text` as shown back in a message: at most 80 characters.
fn shown(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(limit: Option<&str>, after: Option<&str>) -> ListQuery {
        ListQuery { limit: limit.map(str::to_string), after: after.map(str::to_string) }
    }

    #[test]
    fn a_cursor_reads_back_as_it_was_made() {
        let at = DateTime::from_timestamp(1_764_150_000, 5).expect("a time");
        let text = Cursor::encode(&at, "3f2a9c");
        assert_eq!(text, "1764150000.000000005_3f2a9c");
        let pattern = serde_json::json!({ "type": "string", "pattern": CURSOR_PATTERN });
        assert!(
            jsonschema::is_valid(&pattern, &serde_json::json!(text)),
            "{text} matches the documented pattern"
        );
        assert_eq!(Cursor::parse(&text), Some(Cursor { at, id: "3f2a9c".into() }));
    }

    #[test]
    fn without_a_query_the_first_page_of_the_default_size_is_asked() {
        assert_eq!(query(None, None).check(), Ok(PageRequest { limit: DEFAULT_PAGE, after: None }));
        assert_eq!(query(Some("1000"), None).check().map(|p| p.limit), Ok(1000));
        assert_eq!(query(Some("1"), None).check().map(|p| p.limit), Ok(1));
    }

    #[test]
    fn bad_values_are_refused_with_what_would_be_right() {
        for limit in ["0", "1001", "ten", "", "-5", "+5", "2.5", "99999999999999999999999"] {
            let e = query(Some(limit), None).check().expect_err(limit);
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{limit}");
            assert!(e.message.contains("from 1 to 1000"), "{limit}: {}", e.message);
        }
        for after in
            ["", "abc", "3f2a9c", "1764150000_3f2a9c", "1764150000.5_3f2a9c", "1.000000000_", "x.000000000_a"]
        {
            let e = query(None, Some(after)).check().expect_err(after);
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{after}");
            assert!(e.message.contains("`next` of the previous page"), "{after}: {}", e.message);
        }
    }

    #[test]
    fn a_long_bad_value_is_shown_cut() {
        let long = "9".repeat(500);
        let e = query(Some(&long), None).check().expect_err("too long");
        assert!(e.message.len() < 400, "{}", e.message);
    }

    #[test]
    fn the_document_gives_the_cursor_pattern() {
        let doc = crate::openapi::document();
        let params =
            doc["paths"]["/api/v1/deployments"]["get"]["parameters"].as_array().cloned().unwrap_or_default();
        let after = params.iter().find(|p| p["name"] == "after").expect("`after` is documented");
        assert_eq!(after["schema"]["pattern"], CURSOR_PATTERN);
    }
}
