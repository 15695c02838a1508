//! What the policy says about a response for this cache: its directives (from the targeted
//! field when present, RFC 9213), freshness lifetime and current age.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use http::header::{HeaderMap, HeaderName, CACHE_CONTROL};

use super::service::ProxySettings;
use crate::cache::meta::StoredHead;
use crate::cache::policy::{CacheControl, Lifetime, Reading};

/// A stored response assessed at one instant.
pub struct Assessed {
    /// Current age (RFC 9111 §4.2.3).
    pub age: Duration,
    /// Freshness lifetime (§4.2.1, §4.2.2).
    pub lifetime: Lifetime,
    /// The response directives this cache obeys.
    pub directives: CacheControl,
}

impl Assessed {
    /// Remaining freshness in whole seconds; negative once stale.
    pub fn ttl(&self) -> i64 {
        ttl(self.lifetime, self.age)
    }
}

/// Remaining freshness in whole seconds of a response with `lifetime` at `age`.
pub fn ttl(lifetime: Lifetime, age: Duration) -> i64 {
    lifetime.duration().unwrap_or_default().as_secs() as i64 - age.as_secs() as i64
}

impl ProxySettings {
    /// The response fields as this cache's policy reads them: when the targeted field (e.g.
    /// `CDN-Cache-Control`) is present, it replaces `Cache-Control` (RFC 9213 §2.1).
    pub fn policy_headers<'a>(&self, headers: &'a HeaderMap) -> Cow<'a, HeaderMap> {
        let Some(targeted) = &self.targeted_cache_control else { return Cow::Borrowed(headers) };
        if !headers.contains_key(targeted) {
            return Cow::Borrowed(headers);
        }
        let mut view = headers.clone();
        view.remove(CACHE_CONTROL);
        for v in headers.get_all(targeted) {
            view.append(CACHE_CONTROL, v.clone());
        }
        Cow::Owned(view)
    }

    /// Assesses a stored response at `now`. What does not depend on `now` is read from the
    /// head once and kept with it (`policy::reading`); the operator's rules, which a reload
    /// can change, apply on every assessment.
    pub fn assess(&self, head: &StoredHead, now: SystemTime) -> Assessed {
        let reading = head.reading.get_or_read(self.reading_key, || {
            let headers = self.policy_headers(&head.headers);
            let (status, sent, arrived) = (head.status, head.request_time, head.response_time);
            Reading::new(self.reading_key, &self.policy, status, &headers, sent, arrived)
        });
        let lifetime = self.rules.load().lifetime(&head.key, head.status, reading.lifetime);
        let age = reading.current_age(head.response_time, now);
        Assessed { age, lifetime, directives: reading.directives.clone() }
    }

    /// Whether `name` is the targeted field, which is never forwarded downstream.
    pub fn is_targeted(&self, name: &HeaderName) -> bool {
        self.targeted_cache_control.as_ref() == Some(name)
    }
}
