//! The proxy: routing, the request pipeline, the upstream client, CONNECT tunnels and
//! response building.

mod assess;
pub mod body;
mod fetch;
pub mod guard;
pub mod headers;
mod pass;
pub mod purge;
pub mod range;
mod record;
pub mod reply;
pub mod respond;
pub mod route;
pub mod service;
pub mod tunnel;
pub mod upstream;

pub use service::{ClientInfo, Proxy, ProxySettings};
