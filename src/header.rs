//! The SQLite database header (the first 100 bytes of block 0) and the rollback journal's
//! header, decoded in one place for the VFS, the transfers and the command.
//!
//! Field offsets are SQLite's file format (https://www.sqlite.org/fileformat2.html).

/// The first 16 bytes of every SQLite database file.
pub const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// The first 8 bytes of a rollback journal header that SQLite would play back.
pub const JOURNAL_MAGIC: [u8; 8] = [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];

/// Bytes of the database header.
pub const HEADER_LEN: usize = 100;

/// A decoded database header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Bytes per page (512..=65536).
    pub page_size: u64,
    /// File format write version (18): 1 rollback journal, 2 WAL.
    pub write_version: u8,
    /// File format read version (19): 1 rollback journal, 2 WAL.
    pub read_version: u8,
    /// File change counter (24): bumped by every rollback-mode commit.
    pub change_counter: u32,
    /// Database size in pages (28), valid when `version_valid_for` equals the counter.
    pub page_count: u32,
    /// Total freelist pages (36).
    pub freelist_pages: u32,
    /// Schema format number (44).
    pub schema_format: u32,
    /// Text encoding (56): 1 UTF-8, 2 UTF-16le, 3 UTF-16be.
    pub text_encoding: u32,
    /// `PRAGMA user_version` (60).
    pub user_version: u32,
    /// `PRAGMA application_id` (68).
    pub application_id: u32,
    /// The change counter when `page_count` was last valid (92).
    pub version_valid_for: u32,
    /// `SQLITE_VERSION_NUMBER` of the library that last wrote the file (96).
    pub sqlite_version: u32,
}

impl Header {
    /// Parses the first 100 bytes of a database; `None` if they are not a SQLite header.
    pub fn parse(h: &[u8]) -> Option<Header> {
        if h.len() < HEADER_LEN || &h[..16] != SQLITE_MAGIC {
            return None;
        }
        let be32 = |o: usize| u32::from_be_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
        let page_size = match u16::from_be_bytes([h[16], h[17]]) {
            1 => 65536,
            p if p >= 512 && p.is_power_of_two() => u64::from(p),
            _ => return None,
        };
        Some(Header {
            page_size,
            write_version: h[18],
            read_version: h[19],
            change_counter: be32(24),
            page_count: be32(28),
            freelist_pages: be32(36),
            schema_format: be32(44),
            text_encoding: be32(56),
            user_version: be32(60),
            application_id: be32(68),
            version_valid_for: be32(92),
            sqlite_version: be32(96),
        })
    }

    /// Page count × page size, when the header vouches for it (version-valid-for equals
    /// the change counter, as SQLite itself requires).
    pub fn size(&self) -> Option<u64> {
        (self.page_count > 0 && self.version_valid_for == self.change_counter)
            .then(|| u64::from(self.page_count) * self.page_size)
    }

    /// True when the database is in WAL mode (bytes 18 and 19 are 2).
    pub fn is_wal(&self) -> bool {
        self.write_version == 2 || self.read_version == 2
    }

    /// The text encoding, for people.
    pub fn encoding(&self) -> String {
        match self.text_encoding {
            1 => "UTF-8".into(),
            2 => "UTF-16le".into(),
            3 => "UTF-16be".into(),
            0 => "unset (no schema yet)".into(),
            n => format!("invalid ({n})"),
        }
    }

    /// The journal mode family the header records, for people.
    pub fn journal_mode(&self) -> String {
        match (self.write_version, self.read_version) {
            (1, 1) => "rollback journal (header bytes 18-19 = 1: DELETE, TRUNCATE, PERSIST, MEMORY or OFF)".into(),
            (2, 2) => "WAL (header bytes 18-19 = 2): served by one process at a time, which holds the lease while it has the database open".into(),
            (w, r) => format!("unknown (header bytes 18-19 = {w}, {r})"),
        }
    }

    /// The SQLite version that last wrote the file, as `3.45.1`.
    pub fn written_by(&self) -> String {
        let v = self.sqlite_version;
        format!("{}.{}.{}", v / 1_000_000, v / 1000 % 1000, v % 1000)
    }
}

/// The database size a header vouches for (see [`Header::size`]).
pub fn header_size(h: &[u8]) -> Option<u64> {
    Header::parse(h)?.size()
}

/// Block 0 of a database must start with SQLite's header, or be all zeros (SQLite leaves
/// a database it has not written yet that way), or be empty.
pub fn is_database_start(h: &[u8]) -> bool {
    h.is_empty() || h.starts_with(SQLITE_MAGIC) || h.iter().all(|&b| b == 0)
}

/// SQLite's hot-journal rule, as far as the journal's own bytes decide it: a journal whose
/// first bytes are zero (or missing) is never played back. Whether a live writer owns it
/// is the lock's question, not the header's.
pub fn journal_may_be_hot(first_bytes: Option<&[u8]>) -> bool {
    first_bytes.is_some_and(|j| j.iter().any(|&b| b != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(page_size: u16, counter: u32, pages: u32, valid_for: u32) -> Vec<u8> {
        let mut h = vec![0u8; 100];
        h[..16].copy_from_slice(SQLITE_MAGIC);
        h[16..18].copy_from_slice(&page_size.to_be_bytes());
        h[18] = 1;
        h[19] = 1;
        h[24..28].copy_from_slice(&counter.to_be_bytes());
        h[28..32].copy_from_slice(&pages.to_be_bytes());
        h[92..96].copy_from_slice(&valid_for.to_be_bytes());
        h[96..100].copy_from_slice(&3_045_001u32.to_be_bytes());
        h
    }

    #[test]
    fn size_needs_a_valid_header() {
        assert_eq!(header_size(&header(1, 7, 3, 7)), Some(3 * 65536));
        assert_eq!(
            header_size(&header(4096, 7, 3, 6)),
            None,
            "stale in-header size"
        );
        assert_eq!(
            header_size(&header(1000, 7, 3, 7)),
            None,
            "not a power of two"
        );
        assert_eq!(header_size(b"not a database"), None);
    }

    #[test]
    fn fields_decode_at_their_offsets() {
        let mut raw = header(4096, 9, 2, 9);
        raw[18] = 2;
        raw[19] = 2;
        let h = Header::parse(&raw).unwrap();
        assert!(h.is_wal());
        assert_eq!(h.written_by(), "3.45.1");
        assert_eq!(h.change_counter, 9);
    }

    #[test]
    fn database_start_and_hot_journal_rules() {
        assert!(is_database_start(&[]));
        assert!(is_database_start(&[0; 100]));
        assert!(is_database_start(&header(4096, 1, 1, 1)));
        assert!(!is_database_start(b"<html>"));
        assert!(!journal_may_be_hot(None));
        assert!(!journal_may_be_hot(Some(&[0; 28])));
        assert!(journal_may_be_hot(Some(&JOURNAL_MAGIC)));
    }
}
