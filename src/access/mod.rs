//! Who may use the proxy (client addresses) and, later in the pipeline, what it may reach.

pub mod cidr;
pub mod clients;

pub use cidr::Cidr;
pub use clients::{Admission, ClientGate, GateLimits};
