//! C2SP tlog-tiles (<https://c2sp.org/tlog-tiles>): tile paths, tile math and entry bundles.
//!
//! A tile at level `L` and index `n` holds up to 256 consecutive tree hashes at tree level
//! `8L`: the hashes of nodes `(8L, n * 256 + i)` for `i` in `0..width`. Level 0 tiles hold leaf
//! hashes; entry bundles hold the entries themselves. The tree levels between `8L` and `8L + 8`
//! are not stored: a node there is recomputed from the tile hashes below it
//! ([`tile_for_node`]), which costs a few SHA-256 calls and saves a storage read.

use std::fmt;

use crate::merkle::NodeId;

/// Tree levels covered by one tile.
pub const TILE_HEIGHT: u8 = 8;
/// Hashes in a full tile (and entries in a full bundle): `2^TILE_HEIGHT`.
pub const TILE_WIDTH: u64 = 256;

/// Highest tile level the spec allows in a path.
pub const MAX_TILE_LEVEL: u8 = 63;
/// Longest path [`parse_tile_path`] looks at; every valid path is far shorter.
pub const MAX_TILE_PATH_LEN: usize = 256;

/// A tile or entry bundle resource, as named under a log's prefix.
///
/// `width` is 1..=256; 256 is a full tile (no `.p/` suffix), less is a partial one. Values
/// outside that range are never produced by [`parse_tile_path`] and have no canonical path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TilePath {
    /// `tile/<L>/<N>[.p/<W>]`: hashes at tree level `8 * level`.
    Hashes {
        /// Tile level `L`, 0..=63.
        level: u8,
        /// Tile index `N` within the level.
        index: u64,
        /// Number of hashes, 1..=256.
        width: u16,
    },
    /// `tile/entries/<N>[.p/<W>]`: the entries under level-0 tile `N`.
    Entries {
        /// Bundle index `N`.
        index: u64,
        /// Number of entries, 1..=256.
        width: u16,
    },
}

/// Why a tile path was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TilePathError {
    /// Empty, or longer than [`MAX_TILE_PATH_LEN`].
    #[error("tile path length {len} out of range")]
    BadLength {
        /// Input length in bytes.
        len: usize,
    },
    /// Does not start with `tile/`, or has missing or extra segments.
    #[error("malformed tile path")]
    Malformed,
    /// Level is not a canonical decimal in 0..=63.
    #[error("bad tile level")]
    BadLevel,
    /// Index is not in the canonical `x001/x234/067` encoding, or overflows `u64`.
    #[error("bad tile index")]
    BadIndex,
    /// Partial width is not a canonical decimal in 1..=255.
    #[error("bad partial tile width")]
    BadWidth,
}

impl fmt::Display for TilePath {
    /// The canonical path, without a leading `/`: `tile/0/x001/x234/067`, `tile/entries/000.p/7`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (index, width) = match *self {
            TilePath::Hashes {
                level,
                index,
                width,
            } => {
                write!(f, "tile/{level}/")?;
                (index, width)
            }
            TilePath::Entries { index, width } => {
                f.write_str("tile/entries/")?;
                (index, width)
            }
        };
        write_index(f, index)?;
        if u64::from(width) != TILE_WIDTH {
            write!(f, ".p/{width}")?;
        }
        Ok(())
    }
}

/// `1234067` -> `x001/x234/067`: groups of three digits, most significant first, all but the
/// last prefixed with `x`, no leading all-zero groups.
fn write_index(f: &mut fmt::Formatter<'_>, index: u64) -> fmt::Result {
    let mut groups = Vec::with_capacity(7);
    let mut rest = index;
    loop {
        groups.push(rest % 1000);
        rest /= 1000;
        if rest == 0 {
            break;
        }
    }
    let (last, upper) = groups.split_first().expect("at least one group");
    for g in upper.iter().rev() {
        write!(f, "x{g:03}/")?;
    }
    write!(f, "{last:03}")
}

/// Parses a tile or entry bundle path (the part after the log prefix's `/`), accepting only
/// the canonical form, so that every resource has exactly one name (caches and the
/// filesystem-backed layout the spec is designed for both rely on that).
pub fn parse_tile_path(path: &str) -> Result<TilePath, TilePathError> {
    if path.is_empty() || path.len() > MAX_TILE_PATH_LEN {
        return Err(TilePathError::BadLength { len: path.len() });
    }
    let rest = path.strip_prefix("tile/").ok_or(TilePathError::Malformed)?;
    let (kind, rest) = rest.split_once('/').ok_or(TilePathError::Malformed)?;
    let level = if kind == "entries" {
        None
    } else {
        let level = parse_decimal(kind).ok_or(TilePathError::BadLevel)?;
        if level > u64::from(MAX_TILE_LEVEL) {
            return Err(TilePathError::BadLevel);
        }
        Some(level as u8)
    };

    let (index, width) = match rest.split_once(".p/") {
        None => (rest, TILE_WIDTH as u16),
        Some((index, width)) => {
            let width = parse_decimal(width).ok_or(TilePathError::BadWidth)?;
            if width == 0 || width >= TILE_WIDTH {
                return Err(TilePathError::BadWidth);
            }
            (index, width as u16)
        }
    };
    let index = parse_index(index)?;
    Ok(match level {
        Some(level) => TilePath::Hashes {
            level,
            index,
            width,
        },
        None => TilePath::Entries { index, width },
    })
}

/// A canonical decimal: ASCII digits only, no sign, no leading zero (except `0` itself).
/// `None` if not canonical or above `u64::MAX`.
fn parse_decimal(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if !canonical {
        return None;
    }
    s.parse().ok()
}

fn parse_index(s: &str) -> Result<u64, TilePathError> {
    let groups: Vec<&str> = s.split('/').collect();
    let (last, upper) = groups.split_last().ok_or(TilePathError::BadIndex)?;
    let three_digits = |g: &str| g.len() == 3 && g.bytes().all(|b| b.is_ascii_digit());
    let mut index: u64 = 0;
    for (i, g) in upper.iter().enumerate() {
        let digits = g.strip_prefix('x').ok_or(TilePathError::BadIndex)?;
        // A leading zero group would give the same index a second name.
        if !three_digits(digits) || (i == 0 && digits == "000") {
            return Err(TilePathError::BadIndex);
        }
        index = push_group(index, digits)?;
    }
    if !three_digits(last) {
        return Err(TilePathError::BadIndex);
    }
    push_group(index, last)
}

fn push_group(index: u64, digits: &str) -> Result<u64, TilePathError> {
    let group: u64 = digits.parse().map_err(|_| TilePathError::BadIndex)?;
    index
        .checked_mul(1000)
        .and_then(|i| i.checked_add(group))
        .ok_or(TilePathError::BadIndex)
}

/// Where a tree node lives in tile storage.
///
/// Where a node's hash is *stored* in the tiles: `(tile level, tile index, offset in the tile)`,
/// for nodes on a tile row (tree level a multiple of 8); `None` for the levels in between, which
/// are recomputed from the row below.
pub fn stored_position(id: NodeId) -> Option<(u8, u64, u16)> {
    if !id.level.is_multiple_of(TILE_HEIGHT) {
        return None;
    }
    Some((
        id.level / TILE_HEIGHT,
        id.index / TILE_WIDTH,
        (id.index % TILE_WIDTH) as u16,
    ))
}

/// A node at tree level `l` and index `i` is in tiles of level `L = l / 8`. With `r = l % 8`, it
/// is the root of the complete subtree whose leaves are the `2^r` consecutive level-`8L` hashes
/// `[i << r, (i + 1) << r)`; these never straddle two tiles (`2^r` divides 256). Returns
/// `(tile_level, tile_index, first_offset_in_tile, count)`: the node's hash is the hash of the
/// tile hashes `[first_offset, first_offset + count)`, i.e.
/// [`crate::merkle::root_of_leaf_hashes`] over them (just the hash itself when `r == 0`). The
/// node is complete in a tree exactly when that tile holds at least `first_offset + count`
/// hashes for the tree's size ([`tile_width_for`]).
pub fn tile_for_node(id: NodeId) -> (u8, u64, u16, u16) {
    let tile_level = id.level / TILE_HEIGHT;
    let r = u32::from(id.level % TILE_HEIGHT);
    let shift = u32::from(TILE_HEIGHT) - r;
    // (i << r) / 256 and (i << r) % 256, without overflowing for large indices.
    let tile_index = id.index >> shift;
    let first_offset = (id.index & ((1 << shift) - 1)) << r;
    (tile_level, tile_index, first_offset as u16, 1 << r)
}

/// How many hashes tile `tile_index` at `tile_level` holds for a tree of `tree_size` leaves:
/// 256 if full, the partial width, or 0 if the tile does not exist yet.
pub fn tile_width_for(tree_size: u64, tile_level: u8, tile_index: u64) -> u16 {
    // Complete nodes at tree level 8 * tile_level.
    let level_nodes = tree_size
        .checked_shr(u32::from(tile_level) * u32::from(TILE_HEIGHT))
        .unwrap_or(0);
    match tile_index.checked_mul(TILE_WIDTH) {
        Some(first) if first < level_nodes => (level_nodes - first).min(TILE_WIDTH) as u16,
        _ => 0,
    }
}

/// Why an entry bundle could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// An entry does not fit a `u16` length prefix.
    #[error("entry {index} is {len} bytes, max 65535")]
    EntryTooLong {
        /// Position of the entry in the bundle.
        index: usize,
        /// Its length.
        len: usize,
    },
    /// More entries than a full bundle holds.
    #[error("bundle has more than 256 entries")]
    TooManyEntries,
    /// The input ends inside a length prefix or an entry.
    #[error("bundle truncated at byte {offset}")]
    Truncated {
        /// Where the incomplete length prefix or entry starts.
        offset: usize,
    },
}

/// Encodes an entry bundle: each entry prefixed by its big-endian `u16` length.
pub fn encode_bundle(entries: &[&[u8]]) -> Result<Vec<u8>, BundleError> {
    if entries.len() as u64 > TILE_WIDTH {
        return Err(BundleError::TooManyEntries);
    }
    let total = entries.iter().map(|e| 2 + e.len()).sum();
    let mut out = Vec::with_capacity(total);
    for (index, entry) in entries.iter().enumerate() {
        let len = u16::try_from(entry.len()).map_err(|_| BundleError::EntryTooLong {
            index,
            len: entry.len(),
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(entry);
    }
    Ok(out)
}

/// Decodes an entry bundle, borrowing the entries from `bytes`. Strict: a truncated length
/// prefix or entry, or more than 256 entries, is an error. Checking the entry count against the
/// expected width is the caller's job.
pub fn decode_bundle(bytes: &[u8]) -> Result<Vec<&[u8]>, BundleError> {
    let mut entries = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let offset = bytes.len() - rest.len();
        if entries.len() as u64 == TILE_WIDTH {
            return Err(BundleError::TooManyEntries);
        }
        let (len, tail) = rest
            .split_first_chunk::<2>()
            .ok_or(BundleError::Truncated { offset })?;
        let len = usize::from(u16::from_be_bytes(*len));
        if tail.len() < len {
            return Err(BundleError::Truncated { offset });
        }
        let (entry, tail) = tail.split_at(len);
        entries.push(entry);
        rest = tail;
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_encoding_follows_spec_example() {
        let p = TilePath::Hashes {
            level: 0,
            index: 1_234_067,
            width: 256,
        };
        assert_eq!(p.to_string(), "tile/0/x001/x234/067");
        assert_eq!(parse_tile_path("tile/0/x001/x234/067"), Ok(p));
    }

    #[test]
    fn max_index_round_trips() {
        let p = TilePath::Entries {
            index: u64::MAX,
            width: 1,
        };
        let s = p.to_string();
        assert_eq!(s, "tile/entries/x018/x446/x744/x073/x709/x551/615.p/1");
        assert_eq!(parse_tile_path(&s), Ok(p));
        assert_eq!(
            parse_tile_path("tile/entries/x018/x446/x744/x073/x709/x551/616"),
            Err(TilePathError::BadIndex)
        );
    }

    #[test]
    fn tile_for_node_examples() {
        assert_eq!(tile_for_node(NodeId::new(0, 0)), (0, 0, 0, 1));
        assert_eq!(tile_for_node(NodeId::new(0, 257)), (0, 1, 1, 1));
        assert_eq!(tile_for_node(NodeId::new(3, 33)), (0, 1, 8, 8));
        assert_eq!(tile_for_node(NodeId::new(8, 5)), (1, 0, 5, 1));
        assert_eq!(tile_for_node(NodeId::new(15, 3)), (1, 1, 128, 128));
        assert_eq!(
            tile_for_node(NodeId::new(63, u64::MAX)),
            (7, u64::MAX >> 1, 128, 128)
        );
    }

    #[test]
    fn spec_example_sizes() {
        // "a tree of size 70,000 will be represented by 273 full level 0 tiles, one partial
        // level 0 tile of width 112, one full level 1 tile, one partial level 1 tile of width
        // 17, and one partial level 2 tile of width 1."
        assert_eq!(tile_width_for(70_000, 0, 272), 256);
        assert_eq!(tile_width_for(70_000, 0, 273), 112);
        assert_eq!(tile_width_for(70_000, 0, 274), 0);
        assert_eq!(tile_width_for(70_000, 1, 0), 256);
        assert_eq!(tile_width_for(70_000, 1, 1), 17);
        assert_eq!(tile_width_for(70_000, 2, 0), 1);
        assert_eq!(tile_width_for(70_000, 3, 0), 0);
        assert_eq!(tile_width_for(256, 0, 0), 256);
        assert_eq!(tile_width_for(256, 1, 0), 1);
        assert_eq!(tile_width_for(u64::MAX, 63, 0), 0);
        assert_eq!(tile_width_for(u64::MAX, 7, 0), 255);
        assert_eq!(tile_width_for(u64::MAX, 0, u64::MAX), 0);
    }

    #[test]
    fn bundle_limits() {
        let big = vec![0u8; 65_536];
        assert_eq!(
            encode_bundle(&[b"a", &big]),
            Err(BundleError::EntryTooLong {
                index: 1,
                len: 65_536
            })
        );
        let max = vec![7u8; 65_535];
        let enc = encode_bundle(&[&max]).unwrap();
        assert_eq!(decode_bundle(&enc).unwrap(), vec![&max[..]]);
        let many = vec![&b""[..]; 257];
        assert_eq!(encode_bundle(&many), Err(BundleError::TooManyEntries));
        assert_eq!(
            decode_bundle(&[0u8; 2 * 257]),
            Err(BundleError::TooManyEntries)
        );
        assert_eq!(decode_bundle(&[0u8; 2 * 256]).unwrap().len(), 256);
    }
}
