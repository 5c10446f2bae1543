//! The node's role: one typed [`Role`] from the decision to the data plane,
//! the API and the CLI, and the decision itself ([`decide`]), pure.
//!
//! The kernel side keeps its `u32` ([`lb_common::role`], in the settings
//! map); [`Role::to_map`] is the one place that converts. [`Role`] itself
//! is an API value: it lives in [`lb_common::api`].
pub use lb_common::api::Role;

/// Where a node stands, as far as its role depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Membership {
    /// The node is not part of a cluster: it serves alone.
    Standalone,
}

/// The role a node takes: a standalone node is active (nothing else would
/// forward its services' traffic).
pub fn decide(membership: Membership) -> Role {
    match membership {
        Membership::Standalone => Role::Active,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standalone_node_is_active() {
        assert_eq!(decide(Membership::Standalone), Role::Active);
    }
}
