//! Who may use the proxy (client addresses) and, later in the pipeline, what it may reach.

pub mod cidr;
pub mod clients;
pub mod targets;

pub use cidr::Cidr;
pub use clients::{Admission, ClientGate, GateLimits};
pub use targets::{SharedTargets, TargetAcl, TargetRefused};
