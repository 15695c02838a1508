//! httpcache-proxy library.
