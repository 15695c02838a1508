//! The demo: a generated 272-image test site and a small static origin server that serves it.

pub mod images;
pub mod origin;
pub mod site;

pub use site::Site;
