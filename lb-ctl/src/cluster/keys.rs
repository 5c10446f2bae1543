//! The cluster's key file: the heartbeat HMAC keys, one of which signs.
//! The same file on both nodes, readable by root only:
//!
//! ```toml
//! signing = 2
//! [[keys]]
//! id = 1
//! secret = "64 hex digits"
//! [[keys]]
//! id = 2
//! secret = "64 hex digits"
//! ```
//!
//! To rotate: add the new key to both nodes' files (both accept it), then
//! make it the signing key on both, then remove the old one.
use std::{fs, os::unix::fs::PermissionsExt as _, path::Path};

use serde::{Deserialize, Serialize};

use super::heartbeat::{Key, Keyring};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub signing: u8,
    pub keys: Vec<KeyEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub id: u8,
    /// Hex.
    pub secret: String,
}

impl KeyFile {
    /// A new file with one fresh 256-bit key.
    pub fn generate(random: &mut dyn FnMut(&mut [u8])) -> KeyFile {
        let mut secret = [0u8; 32];
        random(&mut secret);
        KeyFile {
            signing: 1,
            keys: vec![KeyEntry {
                id: 1,
                secret: hex(&secret),
            }],
        }
    }

    pub fn to_toml(&self) -> String {
        format!(
            "# lb cluster keys: heartbeat HMAC-SHA256 keys. The same file on both nodes;\n\
             # root only (chmod 600). To rotate: add a key on both, switch `signing`\n\
             # on both, then remove the old key.\n\n{}",
            toml::to_string_pretty(self).expect("a key file serializes")
        )
    }

    /// Parses the text and builds the keyring.
    pub fn parse(text: &str) -> Result<Keyring, String> {
        let file: KeyFile = toml::from_str(text).map_err(|e| e.message().trim().to_owned())?;
        let keys = file
            .keys
            .iter()
            .map(|entry| {
                unhex(&entry.secret)
                    .map(|secret| Key {
                        id: entry.id,
                        secret,
                    })
                    .ok_or_else(|| format!("key {}: the secret is not hex digits", entry.id))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Keyring::new(keys, file.signing).map_err(|e| e.to_string())
    }

    /// Reads the file: it must be a regular file that only its owner can read.
    pub fn load(path: &Path) -> Result<Keyring, String> {
        let meta = fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "{}: the key file is readable by others (mode {:o}): chmod 600 {}",
                path.display(),
                meta.permissions().mode() & 0o777,
                path.display()
            ));
        }
        let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_file_reads_back_as_a_keyring() {
        let mut n = 0u8;
        let file = KeyFile::generate(&mut |buf| {
            for b in buf {
                n = n.wrapping_add(1);
                *b = n;
            }
        });
        assert_eq!(file.keys[0].secret.len(), 64);
        assert!(file.keys[0].secret.starts_with("010203"));
        KeyFile::parse(&file.to_toml()).unwrap();
    }

    #[test]
    fn bad_files_say_what() {
        let secret = "ab".repeat(32);
        let cases = [
            (
                format!("signing = 2\n[[keys]]\nid = 1\nsecret = \"{secret}\"\n"),
                "the signing key id 2 is not among the keys",
            ),
            (
                format!("signing = 1\n[[keys]]\nid = 1\nsecret = \"xyz{secret}\"\n"),
                "key 1: the secret is not hex digits",
            ),
            (
                "signing = 1\n[[keys]]\nid = 1\nsecret = \"abcd\"\n".to_owned(),
                "heartbeat key 1 is shorter than 16 bytes",
            ),
            (
                "signing = 1\nkeys = []\n".to_owned(),
                "no heartbeat key is configured",
            ),
            ("signing = 1\n".to_owned(), "missing field `keys`"),
        ];
        for (text, want) in cases {
            let err = KeyFile::parse(&text).err().unwrap();
            assert!(err.contains(want), "{err:?} lacks {want:?}");
        }
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let file = KeyFile::generate(&mut |buf| buf.fill(7));
        fs::write(&path, file.to_toml()).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = KeyFile::load(&path).err().unwrap();
        assert!(
            err.contains("readable by others (mode 644): chmod 600"),
            "{err}"
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        KeyFile::load(&path).unwrap();
    }
}
