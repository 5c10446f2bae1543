//! The administrator's credentials: a user name and the argon2id hash of
//! the password, in a TOML file that only root reads (mode 0600). The
//! password itself is never stored or logged.
use std::{
    fs,
    io::Write as _,
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString},
};
use serde::{Deserialize, Serialize};

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// The longest (argon2 takes any length; a bound keeps a request small).
pub const MAX_PASSWORD_CHARS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("{}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    #[error("the password is too short: at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    #[error("the password is too long: at most {MAX_PASSWORD_CHARS} characters")]
    TooLong,
    #[error("the user name must be 1 to 32 letters, digits, '.', '_' or '-' (got {0:?})")]
    BadUser(String),
    #[error("hashing the password: {0}")]
    Hash(String),
}

/// What the credentials file holds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// The administrator's user name.
    pub user: String,
    /// The PHC string of the argon2id hash of the password.
    pub hash: String,
}

impl Credentials {
    /// Credentials for `user` with `password` (checked, then hashed with a
    /// fresh salt and argon2id's default cost).
    pub fn new(user: &str, password: &str) -> Result<Self, CredentialsError> {
        check_user(user)?;
        let chars = password.chars().count();
        if chars < MIN_PASSWORD_CHARS {
            return Err(CredentialsError::TooShort);
        }
        if chars > MAX_PASSWORD_CHARS {
            return Err(CredentialsError::TooLong);
        }
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| CredentialsError::Hash(e.to_string()))?
            .to_string();
        Ok(Self {
            user: user.to_owned(),
            hash,
        })
    }

    /// Whether `user` and `password` are these credentials. The hash is
    /// computed whatever the user name, so that a wrong name takes as long
    /// as a wrong password.
    pub fn check(&self, user: &str, password: &str) -> bool {
        let password_ok = password.chars().count() <= MAX_PASSWORD_CHARS
            && PasswordHash::new(&self.hash)
                .map(|hash| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &hash)
                        .is_ok()
                })
                .unwrap_or(false);
        password_ok && super::same_secret(user, &self.user)
    }

    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        let file = |reason: String| CredentialsError::File {
            path: path.to_owned(),
            reason,
        };
        let text = fs::read_to_string(path).map_err(|e| {
            file(format!(
                "cannot read the console's credentials ({e}); set them with `lb-console set-password --credentials {}`",
                path.display()
            ))
        })?;
        let credentials: Credentials = toml::from_str(&text).map_err(|e| file(e.to_string()))?;
        check_user(&credentials.user).map_err(|e| file(e.to_string()))?;
        PasswordHash::new(&credentials.hash)
            .map_err(|e| file(format!("hash is not an argon2 PHC string: {e}")))?;
        Ok(credentials)
    }

    /// Writes the file at `path` (mode 0600) in one step: a temporary file
    /// beside it renamed over it, so that a failure leaves the old file.
    pub fn save(&self, path: &Path) -> Result<(), CredentialsError> {
        let file = |reason: String| CredentialsError::File {
            path: path.to_owned(),
            reason,
        };
        let text = toml::to_string(self).map_err(|e| file(e.to_string()))?;
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut out = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
            out.write_all(text.as_bytes())?;
            out.sync_all()?;
            fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            file(format!("cannot write: {e}"))
        })
    }
}

fn check_user(user: &str) -> Result<(), CredentialsError> {
    let ok = (1..=32).contains(&user.len())
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(CredentialsError::BadUser(user.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_right_password_passes_and_nothing_else_does() {
        let c = Credentials::new("admin", "correct horse battery").unwrap();
        assert!(c.hash.starts_with("$argon2id$"), "{}", c.hash);
        assert!(!c.hash.contains("correct horse"));
        assert!(c.check("admin", "correct horse battery"));
        assert!(!c.check("admin", "correct horse batterY"));
        assert!(!c.check("root", "correct horse battery"));
        assert!(!c.check("admin", ""));
    }

    #[test]
    fn weak_passwords_and_odd_user_names_are_refused() {
        assert!(matches!(
            Credentials::new("admin", "short"),
            Err(CredentialsError::TooShort)
        ));
        assert!(matches!(
            Credentials::new("admin", &"x".repeat(300)),
            Err(CredentialsError::TooLong)
        ));
        for user in ["", "a b", "ad\"min", &"u".repeat(33)] {
            assert!(
                matches!(
                    Credentials::new(user, "long enough password"),
                    Err(CredentialsError::BadUser(_))
                ),
                "{user:?}"
            );
        }
    }

    #[test]
    fn saved_credentials_load_back_private_and_bad_files_say_where() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.toml");
        let c = Credentials::new("admin", "long enough password").unwrap();
        c.save(&path).unwrap();
        assert_eq!(Credentials::load(&path).unwrap(), c);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        fs::write(&path, "user = \"admin\"\nhash = \"plain\"\n").unwrap();
        let err = Credentials::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("console.toml") && err.contains("argon2"),
            "{err}"
        );
        fs::write(&path, "user = \"admin\"\n").unwrap();
        let err = Credentials::load(&path).unwrap_err().to_string();
        assert!(err.contains("missing field `hash`"), "{err}");
        let err = Credentials::load(&dir.path().join("none.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("set-password"), "{err}");
    }
}
