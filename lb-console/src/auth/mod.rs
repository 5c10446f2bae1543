//! Who may use the console and what they did: the administrator's
//! password (an argon2 hash in a file, never the password), sessions with
//! their CSRF tokens, the throttle of failed logins, and the audit trail.
//!
//! Every decision here is pure (the time is an argument) and unit-tested;
//! the HTTP layer only carries the results into cookies and responses.
pub mod audit;
pub mod password;
pub mod sessions;
pub mod throttle;

/// `n` random bytes from the operating system, as lowercase hexadecimal.
pub fn random_hex(n: usize) -> String {
    use argon2::password_hash::rand_core::{OsRng, RngCore as _};
    let mut bytes = vec![0u8; n];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `a` and `b` are equal, in a time that does not depend on where
/// they differ (tokens compared to what a client sent).
pub fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_hex_has_the_length_asked_and_differs() {
        let a = random_hex(32);
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, random_hex(32));
    }

    #[test]
    fn secrets_compare_by_value() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
        assert!(!same_secret("", "a"));
    }
}
