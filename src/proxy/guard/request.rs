//! Checks on a request head before it is routed: the framing must be unambiguous (RFC 9112
//! §6.1, §6.3) and within the size limits.

use http::{header, HeaderMap, Method, StatusCode, Uri, Version};

use super::{Limits, Refusal};

/// Checks the head of a client request; `Err` is the answer to send instead of forwarding.
pub fn check_head(
    method: &Method,
    uri: &Uri,
    version: Version,
    headers: &HeaderMap,
    limits: &Limits,
) -> Result<(), Refusal> {
    let target_len = uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |p| p.as_str().len());
    if target_len > limits.max_uri_length {
        let msg = format!("request target longer than {} bytes", limits.max_uri_length);
        return Err(Refusal::new(StatusCode::URI_TOO_LONG, msg));
    }
    if headers.get_all(header::HOST).iter().count() > 1 {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, "more than one Host field"));
    }
    let has_te = headers.contains_key(header::TRANSFER_ENCODING);
    let length = content_length(headers)?;
    if has_te && length.is_some() {
        // hyper frames such a message by Transfer-Encoding; a server behind us might not.
        let msg = "both Content-Length and Transfer-Encoding: ambiguous framing";
        return Err(Refusal::new(StatusCode::BAD_REQUEST, msg));
    }
    if has_te {
        if version != Version::HTTP_11 {
            return Err(Refusal::new(StatusCode::BAD_REQUEST, "Transfer-Encoding needs HTTP/1.1"));
        }
        // Only chunked alone: the field is hop-by-hop, so any other coding would reach the
        // origin undecoded and unlabelled.
        let codings = transfer_codings(headers);
        if codings.len() != 1 || codings[0] != "chunked" {
            let msg = format!("Transfer-Encoding {} is not supported (only chunked)", codings.join(", "));
            return Err(Refusal::new(StatusCode::NOT_IMPLEMENTED, msg));
        }
    }
    if let Some(len) = length {
        if limits.max_request_body > 0 && len > limits.max_request_body {
            let msg = format!("request body larger than {} bytes", limits.max_request_body);
            return Err(Refusal::new(StatusCode::PAYLOAD_TOO_LARGE, msg));
        }
    }
    if *method == Method::TRACE && (has_te || length.is_some_and(|l| l > 0)) {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, "TRACE with a body"));
    }
    Ok(())
}

/// The Content-Length of a message: every field line and list member must be the same
/// decimal number (RFC 9110 §8.6); `None` when absent.
pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, Refusal> {
    let mut found: Option<u64> = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        let text = value.to_str().map_err(|_| invalid_length())?;
        for member in text.split(',') {
            let member = member.trim_matches([' ', '\t']);
            if member.is_empty() || member.len() > 19 || !member.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid_length());
            }
            let n: u64 = member.parse().map_err(|_| invalid_length())?;
            if found.is_some_and(|f| f != n) {
                return Err(Refusal::new(StatusCode::BAD_REQUEST, "differing Content-Length values"));
            }
            found = Some(n);
        }
    }
    Ok(found)
}

fn invalid_length() -> Refusal {
    Refusal::new(StatusCode::BAD_REQUEST, "invalid Content-Length")
}

/// The transfer codings named, lower-cased, in order (parameters dropped).
pub fn transfer_codings(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| {
            let text = String::from_utf8_lossy(v.as_bytes());
            text.split(',')
                .map(|c| c.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .filter(|c| !c.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: &str, uri: &str, fields: &[(&str, &str)]) -> Result<(), StatusCode> {
        let mut headers = HeaderMap::new();
        for (k, v) in fields {
            headers.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        let limits = Limits { max_uri_length: 64, max_request_body: 1000 };
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        check_head(&method, &uri.parse().unwrap(), Version::HTTP_11, &headers, &limits).map_err(|r| r.status)
    }

    #[test]
    fn plain_requests_pass() {
        assert_eq!(check("GET", "/h/x", &[("host", "a")]), Ok(()));
        assert_eq!(check("POST", "/h/x", &[("content-length", "5"), ("content-length", "5")]), Ok(()));
        assert_eq!(check("POST", "/h/x", &[("transfer-encoding", "Chunked")]), Ok(()));
    }

    #[test]
    fn ambiguous_framing_is_400() {
        let both = [("content-length", "5"), ("transfer-encoding", "chunked")];
        assert_eq!(check("POST", "/x", &both), Err(StatusCode::BAD_REQUEST));
        let differ = [("content-length", "5"), ("content-length", "6")];
        assert_eq!(check("POST", "/x", &differ), Err(StatusCode::BAD_REQUEST));
        assert_eq!(check("POST", "/x", &[("content-length", "5, 6")]), Err(StatusCode::BAD_REQUEST));
        assert_eq!(check("POST", "/x", &[("content-length", "+5")]), Err(StatusCode::BAD_REQUEST));
        assert_eq!(check("POST", "/x", &[("content-length", "")]), Err(StatusCode::BAD_REQUEST));
        assert_eq!(check("GET", "/x", &[("host", "a"), ("host", "b")]), Err(StatusCode::BAD_REQUEST));
        assert_eq!(check("TRACE", "/x", &[("content-length", "3")]), Err(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn codings_other_than_chunked_are_501() {
        for te in ["gzip, chunked", "chunked, chunked", "identity"] {
            assert_eq!(
                check("POST", "/x", &[("transfer-encoding", te)]),
                Err(StatusCode::NOT_IMPLEMENTED),
                "{te}"
            );
        }
    }

    #[test]
    fn limits_answer_414_and_413() {
        assert_eq!(check("GET", &format!("/{}", "a".repeat(64)), &[]), Err(StatusCode::URI_TOO_LONG));
        assert_eq!(check("GET", &format!("/{}", "a".repeat(63)), &[]), Ok(()));
        assert_eq!(check("POST", "/x", &[("content-length", "1001")]), Err(StatusCode::PAYLOAD_TOO_LARGE));
        assert_eq!(check("POST", "/x", &[("content-length", "1000")]), Ok(()));
    }
}
