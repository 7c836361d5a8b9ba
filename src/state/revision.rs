//! Which version of a stored document was read: a run reads its environment's state
//! once without the lock (to resolve machine identities) and again under it. When the
//! stored bytes have not changed in between, the second read would decode (parse,
//! checksum, deserialize) the very same document; a [`Revision`] lets it keep the first.

use sha2::{Digest, Sha256};

use super::StateDocument;

/// The SHA-256 of a document's bytes as stored (before decryption): equal revisions are
/// equal bytes, and equal bytes decode to the same document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revision([u8; 32]);

impl Revision {
    pub fn of(stored: &[u8]) -> Self {
        Revision(Sha256::digest(stored).into())
    }

    /// The revision of everything `reader` holds, read in pieces.
    pub fn read(mut reader: impl std::io::Read) -> std::io::Result<Self> {
        let mut hasher = Sha256::new();
        let mut piece = vec![0; 256 * 1024];
        loop {
            match reader.read(&mut piece) {
                Ok(0) => return Ok(Revision(hasher.finalize().into())),
                Ok(n) => hasher.update(&piece[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// A document read without the lock, with its revision (`None`: none stored then, or a
/// backend that cannot tell).
#[derive(Debug, Clone)]
pub struct UnlockedRead {
    pub document: StateDocument,
    pub revision: Option<Revision>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_tell_bytes_apart() {
        assert_eq!(Revision::of(b"{\"a\":1}"), Revision::of(b"{\"a\":1}"));
        assert_ne!(Revision::of(b"{\"a\":1}"), Revision::of(b"{\"a\":2}"));
        assert_ne!(Revision::of(b"{\"a\":1}"), Revision::of(b"{\"a\":1} "));
    }

    #[test]
    fn read_in_pieces_is_the_revision_of_the_whole() {
        let bytes: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(Revision::read(&bytes[..]).unwrap(), Revision::of(&bytes));
        assert_eq!(Revision::read(&b""[..]).unwrap(), Revision::of(b""));
    }
}
