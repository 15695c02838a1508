//! Checks on an upstream response head before it is served or stored: a head that a client or
//! a cache could frame two ways is a broken response (502), never passed on.

use http::{header, HeaderMap};

use super::request::content_length;

/// `Err` names why the head is refused; `Ok` carries its Content-Length, if any.
pub fn check_upstream_head(headers: &HeaderMap) -> Result<Option<u64>, String> {
    let length = content_length(headers).map_err(|r| r.reason)?;
    if length.is_some() && headers.contains_key(header::TRANSFER_ENCODING) {
        return Err("both Content-Length and Transfer-Encoding".into());
    }
    Ok(length)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(fields: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in fields {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn ambiguous_heads_are_refused() {
        assert!(check_upstream_head(&head(&[("content-length", "3")])).is_ok());
        assert!(check_upstream_head(&head(&[("transfer-encoding", "chunked")])).is_ok());
        assert!(
            check_upstream_head(&head(&[("content-length", "3"), ("transfer-encoding", "chunked")])).is_err()
        );
        assert!(check_upstream_head(&head(&[("content-length", "3"), ("content-length", "4")])).is_err());
        assert!(check_upstream_head(&head(&[("content-length", "3x")])).is_err());
    }
}
