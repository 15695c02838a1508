//! The live dashboard: one HTML page (inline CSS and JS, no build step, nothing fetched from
//! the internet) that polls `/api/stats` every second and redraws its figures in place.

/// The page served at `/`.
pub(super) const PAGE: &str = include_str!("dashboard.html");
