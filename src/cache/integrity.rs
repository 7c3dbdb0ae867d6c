//! Hashes that let every reader and every resumed writer tell intact cache
//! bytes from damaged ones: blake3 of each file, of each checkpoint chunk,
//! and of the manifest itself (its "seal").

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The size and blake3 of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileHash {
    pub bytes: u64,
    pub blake3: String,
}

/// The blake3 of one checkpoint chunk's rows in each ordering file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkHash {
    pub similar: String,
    pub different: String,
}

/// blake3 of `bytes` in hex; large inputs are hashed on all threads.
pub fn hash_bytes(bytes: &[u8]) -> String {
    let mut h = blake3::Hasher::new();
    if bytes.len() >= 1 << 20 {
        h.update_rayon(bytes);
    } else {
        h.update(bytes);
    }
    h.finalize().to_hex().to_string()
}

/// The size and blake3 of the file at `path`.
pub fn hash_file(path: &Path) -> Result<FileHash> {
    let mut h = blake3::Hasher::new();
    h.update_mmap_rayon(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(FileHash {
        bytes: h.count(),
        blake3: h.finalize().to_hex().to_string(),
    })
}

/// blake3 of `len` bytes of `path` from `offset`, or `None` when the file is
/// missing or too short to hold them.
pub fn hash_range(path: &Path, offset: u64, len: usize) -> Option<String> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    if f.metadata().ok()?.len() < offset + len as u64 {
        return None;
    }
    let mut buf = vec![0; len];
    f.seek(SeekFrom::Start(offset)).ok()?;
    f.read_exact(&mut buf).ok()?;
    Some(hash_bytes(&buf))
}

/// The seal's field: the manifest's first, so its place is found without
/// parsing (a string value cannot hold an unescaped quote, so the first
/// match is the field itself).
const SEAL_FIELD: &[u8] = b"\"manifest_hash\": \"";
const SEAL_LEN: usize = 64;
/// What the seal holds while the hash is computed.
pub const UNSEALED: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn seal_at(bytes: &[u8]) -> Option<usize> {
    let at = bytes.windows(SEAL_FIELD.len()).position(|w| w == SEAL_FIELD)? + SEAL_FIELD.len();
    (bytes.len() >= at + SEAL_LEN).then_some(at)
}

/// The blake3 of the manifest's bytes with the seal zeroed.
fn seal_of(bytes: &[u8], at: usize) -> String {
    let mut h = blake3::Hasher::new();
    h.update(&bytes[..at]);
    h.update(UNSEALED.as_bytes());
    h.update(&bytes[at + SEAL_LEN..]);
    h.finalize().to_hex().to_string()
}

/// Writes the hash of the manifest's bytes into its `manifest_hash`
/// field, which must hold [`UNSEALED`]; hashing raw bytes (not a
/// re-serialisation) makes the check independent of number formatting.
/// Returns the sealed bytes and the seal.
pub fn seal(mut bytes: Vec<u8>) -> (Vec<u8>, String) {
    let at = seal_at(&bytes).expect("the manifest serialises its seal field first");
    let hash = seal_of(&bytes, at);
    bytes[at..at + SEAL_LEN].copy_from_slice(hash.as_bytes());
    (bytes, hash)
}

/// Refuses manifest bytes whose seal does not match them.
pub fn check_seal(path: &Path, bytes: &[u8]) -> Result<()> {
    let Some(at) = seal_at(bytes) else {
        bail!("{} has no manifest_hash: it is damaged", path.display());
    };
    if bytes[at..at + SEAL_LEN] != *seal_of(bytes, at).as_bytes() {
        bail!("{} does not match its manifest_hash: it is damaged", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_manifest_checks_and_any_flipped_byte_is_caught() {
        let body = format!("{{\n  \"manifest_hash\": \"{UNSEALED}\",\n  \"keys\": [\"a\", \"b\"]\n}}");
        let (sealed, _) = seal(body.into_bytes());
        let p = Path::new("manifest.json");
        check_seal(p, &sealed).unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x20;
            let err = check_seal(p, &bad).unwrap_err().to_string();
            assert!(err.contains("manifest.json"), "{err}");
        }
    }

    #[test]
    fn ranges_of_missing_or_short_files_are_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        assert_eq!(hash_range(&p, 0, 4), None);
        std::fs::write(&p, [1, 2, 3, 4, 5]).unwrap();
        assert_eq!(hash_range(&p, 1, 4), Some(hash_bytes(&[2, 3, 4, 5])));
        assert_eq!(hash_range(&p, 2, 4), None);
        assert_eq!(hash_file(&p).unwrap().blake3, hash_bytes(&[1, 2, 3, 4, 5]));
    }
}
