//! The CLI's side of the local API: the client in [`lb_common::api`], the
//! console's too.
pub use lb_common::api::client::{Client, ClientError};
