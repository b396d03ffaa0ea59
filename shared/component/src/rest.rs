//! IoT Central's REST conventions, once for every handler: JSON bodies (with a size limit and
//! content-type check), JSON merge patch (RFC 7396), `If-Match`, keyset paging with `nextLink`,
//! and query parameters.

use gyre_domain::percent;
use serde::de::DeserializeOwned;
use serde::Serialize;
use spin_sdk::http::{Params, Request, Response};

use crate::{json_response, ApiError};

/// Largest request body a handler reads.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Page size when the caller asks for none, and the largest it may ask for.
pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 1000;

/// Reads a JSON body into `T`: 415 for another content type, 413 over [`MAX_BODY_BYTES`], 400
/// for invalid JSON or wrong types (serde's message says where).
pub fn read_json<T: DeserializeOwned>(request: &Request) -> Result<T, ApiError> {
    read_json_limited(request, MAX_BODY_BYTES)
}

/// [`read_json`] with another size limit, for internal endpoints that take large batches.
pub fn read_json_limited<T: DeserializeOwned>(
    request: &Request,
    limit: usize,
) -> Result<T, ApiError> {
    let body = checked_body(request, limit)?;
    serde_json::from_slice(body).map_err(|err| ApiError::BadRequest {
        message: format!("the request body is not valid: {err}"),
    })
}

/// Reads a merge-patch body: a JSON object.
pub fn read_merge_patch(request: &Request) -> Result<serde_json::Value, ApiError> {
    let patch: serde_json::Value = read_json(request)?;
    if !patch.is_object() {
        return Err(ApiError::BadRequest {
            message: "a patch must be a JSON object".into(),
        });
    }
    Ok(patch)
}

/// The request's media type, lowercase and without parameters; `application/json` when the
/// request names none.
pub fn media_type(request: &Request) -> String {
    content_type(request)
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn content_type(request: &Request) -> &str {
    request
        .header("content-type")
        .and_then(|value| value.as_str())
        .unwrap_or("application/json")
}

fn checked_body(request: &Request, limit: usize) -> Result<&[u8], ApiError> {
    let media_type = media_type(request);
    if media_type != "application/json" && media_type != "application/merge-patch+json" {
        return Err(ApiError::UnsupportedMediaType {
            content_type: content_type(request).to_string(),
        });
    }
    read_body_limited(request, limit)
}

/// The request's body, whatever its type: 413 over `limit` bytes.
pub fn read_body_limited(request: &Request, limit: usize) -> Result<&[u8], ApiError> {
    let body = request.body();
    if body.len() > limit {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    Ok(body)
}

/// Applies an RFC 7396 merge patch: objects merge member by member, `null` removes a member,
/// anything else replaces.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let serde_json::Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = serde_json::Value::Object(serde_json::Map::new());
    }
    let serde_json::Value::Object(target) = target else {
        return;
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(
                target.entry(key.clone()).or_insert(serde_json::Value::Null),
                value,
            );
        }
    }
}

/// Honours `If-Match`: absent or `*` passes; otherwise it must name the current etag.
pub fn check_if_match(request: &Request, current_etag: &str) -> Result<(), ApiError> {
    let Some(wanted) = request.header("if-match").and_then(|value| value.as_str()) else {
        return Ok(());
    };
    let matches = wanted
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag == current_etag);
    if matches {
        Ok(())
    } else {
        Err(ApiError::PreconditionFailed {
            message: format!("If-Match {wanted} does not match the current etag {current_etag}"),
        })
    }
}

/// One page of a collection, as asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub top: usize,
    /// The cursor: the last id of the previous page.
    pub after: Option<String>,
}

impl PageRequest {
    /// How many items to fetch: one more than the page holds, which tells whether a next page
    /// exists without a count query.
    pub fn fetch_limit(&self) -> u32 {
        u32::try_from(self.top + 1).unwrap_or(u32::MAX)
    }

    /// The cursor parsed by `parse`; 400 saying it is not `what` when it does not parse.
    pub fn after_as<T, E>(
        &self,
        what: &str,
        parse: impl Fn(&str) -> Result<T, E>,
    ) -> Result<Option<T>, ApiError> {
        self.after
            .as_deref()
            .map(|raw| {
                parse(raw).map_err(|_| ApiError::BadRequest {
                    message: format!("$skiptoken `{raw}` is not {what}"),
                })
            })
            .transpose()
    }
}

/// Answers one page from `fetched` (read with [`PageRequest::fetch_limit`]): the first `top`
/// items in their wire form, and a `nextLink` after the last of them when more were found.
pub fn page_response<T, W: Serialize>(
    request: &Request,
    page: &PageRequest,
    mut fetched: Vec<T>,
    to_wire: impl Fn(&T) -> W,
    cursor: impl Fn(&T) -> String,
) -> Result<Response, ApiError> {
    let has_more = fetched.len() > page.top;
    fetched.truncate(page.top);
    let items: Vec<W> = fetched.iter().map(to_wire).collect();
    let next_after = if has_more {
        fetched.last().map(cursor)
    } else {
        None
    };
    collection(request, &items, next_after.as_deref())
}

/// Reads `$top` (or `maxpagesize`) and `$skiptoken`.
pub fn page_request(request: &Request) -> Result<PageRequest, ApiError> {
    let top = match query_param(request, "$top").or_else(|| query_param(request, "maxpagesize")) {
        None => DEFAULT_PAGE_SIZE,
        Some(raw) => match raw.parse::<usize>() {
            Ok(top) if (1..=MAX_PAGE_SIZE).contains(&top) => top,
            _ => {
                return Err(ApiError::BadRequest {
                    message: format!(
                        "$top must be a whole number from 1 to {MAX_PAGE_SIZE}, not `{raw}`"
                    ),
                })
            }
        },
    };
    let after = query_param(request, "$skiptoken").filter(|token| !token.is_empty());
    Ok(PageRequest { top, after })
}

/// `{"value": [...], "nextLink": "..."}`; `nextLink` repeats the request's URL with
/// `$skiptoken` set to `next_after`, and is left out on the last page.
pub fn collection<T: Serialize>(
    request: &Request,
    items: &[T],
    next_after: Option<&str>,
) -> Result<Response, ApiError> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Collection<'a, T> {
        value: &'a [T],
        #[serde(skip_serializing_if = "Option::is_none")]
        next_link: Option<String>,
    }
    let next_link = next_after.map(|after| next_link(request, after));
    json_response(
        200,
        &Collection {
            value: items,
            next_link,
        },
    )
}

fn next_link(request: &Request, after: &str) -> String {
    // The host sets `spin-full-url` to the URL the client called (Spin does the same).
    let full_url = request
        .header("spin-full-url")
        .and_then(|value| value.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| request.uri().to_string());
    let (base, query) = full_url.split_once('?').unwrap_or((&full_url, ""));
    let mut pairs: Vec<String> = query
        .split('&')
        .filter(|pair| {
            !pair.is_empty()
                && !pair.starts_with("$skiptoken=")
                && !pair.starts_with("%24skiptoken=")
        })
        .map(str::to_string)
        .collect();
    pairs.push(format!("$skiptoken={}", percent::encode(after)));
    format!("{base}?{}", pairs.join("&"))
}

/// A 204 with no body.
pub fn no_content() -> Response {
    Response::builder().status(204).build()
}

/// The decoded value of query parameter `name` (`+` is a space, as in forms; a malformed
/// escape is kept as written).
pub fn query_param(request: &Request, name: &str) -> Option<String> {
    let decode = |raw: &str| {
        let spaced = raw.replace('+', " ");
        percent::decode(&spaced).unwrap_or(spaced)
    };
    request.query().split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key) == name).then(|| decode(value))
    })
}

/// The percent-decoded value of the route's `:name` segment (`+` stays `+`: a path is not a
/// form). 400 when it is not valid percent-encoded UTF-8.
pub fn path_param(params: &Params, name: &str) -> Result<String, ApiError> {
    let raw = params.get(name).unwrap_or_default();
    percent::decode(raw).ok_or_else(|| ApiError::BadRequest {
        message: format!("`{raw}` is not valid percent-encoded UTF-8"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (json!({"a": [1]}), json!({"a": [2]}), json!({"a": [2]})),
            (json!([1]), json!({"a": 1}), json!({"a": 1})),
            (json!({"a": 1}), json!("x"), json!("x")),
        ];
        for (mut target, patch, expected) in cases {
            merge_patch(&mut target, &patch);
            assert_eq!(target, expected, "patch {patch}");
        }
    }
}
