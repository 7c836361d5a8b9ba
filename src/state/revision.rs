//! Which version of a stored document was read: a run reads its environment's state
//! once without the lock (to resolve machine identities) and again under it. When the
//! stored bytes have not changed in between, the second read would decode (parse,
//! checksum, deserialize) the very same document; a [`Revision`] lets it keep the first.

use xxhash_rust::xxh3::{Xxh3, xxh3_128};

use super::StateDocument;

/// A 128-bit XXH3 digest of a document's bytes as stored (before decryption), with
/// their length: equal revisions are equal bytes (a collision between two versions of
/// one file is a 2^-128 chance), and equal bytes decode to the same document. Not a
/// cryptographic digest, and it need not be: it tells two reads of one file apart, and
/// a document is verified by its own checksum when it is decoded. SHA-256 here
/// hashed the state file twice per run, a twentieth of a steady fleet plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revision {
    length: u64,
    digest: u128,
}

impl Revision {
    pub fn of(stored: &[u8]) -> Self {
        Revision {
            length: stored.len() as u64,
            digest: xxh3_128(stored),
        }
    }

    /// The revision of everything `reader` holds, read in pieces.
    pub fn read(mut reader: impl std::io::Read) -> std::io::Result<Self> {
        let mut hasher = Xxh3::new();
        let mut length = 0u64;
        let mut piece = vec![0; 256 * 1024];
        loop {
            match reader.read(&mut piece) {
                Ok(0) => {
                    return Ok(Revision {
                        length,
                        digest: hasher.digest128(),
                    });
                }
                Ok(n) => {
                    hasher.update(&piece[..n]);
                    length += n as u64;
                }
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
        // Pieces of any size, as a file read returns them.
        let chunked = std::io::Read::chain(&bytes[..1], &bytes[1..]);
        assert_eq!(Revision::read(chunked).unwrap(), Revision::of(&bytes));
    }

    #[test]
    fn one_changed_byte_anywhere_is_another_revision() {
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let original = Revision::of(&bytes);
        for at in [0, 1, 4095, 131_072, 262_143, 299_999] {
            let mut changed = bytes.clone();
            changed[at] ^= 1;
            assert_ne!(Revision::of(&changed), original, "byte {at}");
            assert_ne!(Revision::read(&changed[..]).unwrap(), original, "byte {at}");
        }
    }
}
