//! C2SP tlog-tiles: paths, tile math against brute force, entry bundles.

use std::collections::HashMap;

use kt_core::hash::{leaf_hash, Hash};
use kt_core::merkle::{root_of_leaf_hashes, Frontier, NodeId};
use kt_core::tiles::{
    decode_bundle, encode_bundle, parse_tile_path, tile_for_node, tile_width_for, BundleError,
    TilePath, TilePathError, TILE_HEIGHT, TILE_WIDTH,
};
use proptest::prelude::*;

fn hashes(level: u8, index: u64, width: u16) -> TilePath {
    TilePath::Hashes {
        level,
        index,
        width,
    }
}

fn entries(index: u64, width: u16) -> TilePath {
    TilePath::Entries { index, width }
}

#[test]
fn spec_and_brief_examples() {
    let cases = [
        ("tile/0/x001/x234/067", hashes(0, 1_234_067, 256)),
        ("tile/1/000.p/17", hashes(1, 0, 17)),
        ("tile/entries/x001/234.p/255", entries(1234, 255)),
        ("tile/0/000", hashes(0, 0, 256)),
        ("tile/63/999", hashes(63, 999, 256)),
        ("tile/2/000.p/1", hashes(2, 0, 1)),
        ("tile/0/x001/000", hashes(0, 1000, 256)),
        ("tile/0/x273/x000/000.p/112", hashes(0, 273_000_000, 112)),
        ("tile/entries/272", entries(272, 256)),
        ("tile/entries/001.p/1", entries(1, 1)),
    ];
    for (path, want) in cases {
        assert_eq!(parse_tile_path(path), Ok(want), "{path}");
        assert_eq!(want.to_string(), path);
    }
}

#[test]
fn rejects_malformed_paths() {
    use TilePathError::*;
    let long = format!("tile/0/{}000", "x001/".repeat(60));
    let cases: &[(&str, TilePathError)] = &[
        ("", BadLength { len: 0 }),
        (&long, BadLength { len: long.len() }),
        ("/tile/0/000", Malformed),
        ("tiles/0/000", Malformed),
        ("tile", Malformed),
        ("tile/", Malformed),
        ("tile/0", Malformed),
        ("tile/entries", Malformed),
        ("Tile/0/000", Malformed),
        // Level: canonical decimal 0..=63.
        ("tile//000", BadLevel),
        ("tile/00/000", BadLevel),
        ("tile/01/000", BadLevel),
        ("tile/+1/000", BadLevel),
        ("tile/-1/000", BadLevel),
        ("tile/64/000", BadLevel),
        ("tile/256/000", BadLevel),
        ("tile/x/000", BadLevel),
        ("tile/ 1/000", BadLevel),
        ("tile/١/000", BadLevel),
        ("tile/data/000", BadLevel),
        ("tile/8/0/000", BadIndex), // Go sumdb's tile/H/L/N layout.
        // Index: groups of three digits, x on all but the last, no leading zero group.
        ("tile/0/", BadIndex),
        ("tile/0/0", BadIndex),
        ("tile/0/00", BadIndex),
        ("tile/0/0000", BadIndex),
        ("tile/0/1234", BadIndex),
        ("tile/0/x000", BadIndex),
        ("tile/0/x001", BadIndex),
        ("tile/0/001/234", BadIndex),
        ("tile/0/x001/x234", BadIndex),
        ("tile/0/x000/067", BadIndex),
        ("tile/0/x000/x001/067", BadIndex),
        ("tile/0/x01/067", BadIndex),
        ("tile/0/x0001/067", BadIndex),
        ("tile/0/X001/067", BadIndex),
        ("tile/0/xx01/067", BadIndex),
        ("tile/0/+01", BadIndex),
        ("tile/0/-01", BadIndex),
        ("tile/0/ 01", BadIndex),
        ("tile/0/0a1", BadIndex),
        ("tile/0/000/", BadIndex),
        ("tile/0//000", BadIndex),
        ("tile/0/000/extra", BadIndex),
        ("tile/0/x018/x446/x744/x073/x709/x551/616", BadIndex),
        ("tile/0/x001/x018/x446/x744/x073/x709/x551/615", BadIndex),
        ("tile/entries/x000/001", BadIndex),
        ("tile/0/000.p", BadIndex),
        ("tile/0/000.q/5", BadIndex),
        ("tile/0/000.p5", BadIndex),
        // Width: canonical decimal 1..=255.
        ("tile/0/000.p/", BadWidth),
        ("tile/0/000.p/0", BadWidth),
        ("tile/0/000.p/00", BadWidth),
        ("tile/0/000.p/01", BadWidth),
        ("tile/0/000.p/+1", BadWidth),
        ("tile/0/000.p/256", BadWidth),
        ("tile/0/000.p/1000", BadWidth),
        ("tile/0/000.p/99999999999999999999999", BadWidth),
        ("tile/0/000.p/5/", BadWidth),
        ("tile/0/000.p/5/000", BadWidth),
        ("tile/0/000.p/5.p/5", BadWidth),
        ("tile/entries/000.p/0", BadWidth),
        ("tile/entries/000.p/256", BadWidth),
        ("tile/0/x001.p/5/000", BadWidth),
    ];
    for (path, want) in cases {
        assert_eq!(parse_tile_path(path).as_ref(), Err(want), "{path:?}");
    }
}

fn any_tile_path() -> impl Strategy<Value = TilePath> {
    let width = prop_oneof![Just(256u16), 1u16..=255];
    let index = prop_oneof![0u64..2000, any::<u64>()];
    prop_oneof![
        (0u8..=63, index.clone(), width.clone()).prop_map(|(l, i, w)| hashes(l, i, w)),
        (index, width).prop_map(|(i, w)| entries(i, w)),
    ]
}

proptest! {
    #[test]
    fn paths_round_trip(path in any_tile_path()) {
        let text = path.to_string();
        prop_assert_eq!(parse_tile_path(&text), Ok(path));
    }

    #[test]
    fn parser_never_panics_and_accepts_only_canonical(s in "[tile/entrix0-9.p+]{0,40}") {
        if let Ok(path) = parse_tile_path(&s) {
            prop_assert_eq!(path.to_string(), s);
        }
    }

    #[test]
    fn bundles_round_trip(entries in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..=256)) {
        let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        let bytes = encode_bundle(&refs).unwrap();
        prop_assert_eq!(bytes.len(), entries.iter().map(|e| 2 + e.len()).sum::<usize>());
        prop_assert_eq!(decode_bundle(&bytes).unwrap(), refs);
    }

    #[test]
    fn truncated_bundles_are_rejected(
        entries in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..20),
        cut in any::<prop::sample::Index>(),
    ) {
        let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        let bytes = encode_bundle(&refs).unwrap();
        // Entry boundaries are the only valid places to stop.
        let mut boundaries = vec![0];
        for e in &entries {
            boundaries.push(boundaries.last().unwrap() + 2 + e.len());
        }
        let cut = cut.index(bytes.len());
        let result = decode_bundle(&bytes[..cut]);
        match boundaries.iter().position(|&b| b == cut) {
            Some(n) => prop_assert_eq!(result.unwrap(), &refs[..n]),
            None => {
                let offset = *boundaries.iter().rev().find(|&&b| b < cut).unwrap();
                prop_assert_eq!(result, Err(BundleError::Truncated { offset }));
            }
        }
    }
}

#[test]
fn bundle_wire_format() {
    let bytes = encode_bundle(&[b"ab", b"", b"xyz"]).unwrap();
    assert_eq!(bytes, b"\x00\x02ab\x00\x00\x00\x03xyz");
    assert_eq!(
        decode_bundle(&bytes).unwrap(),
        vec![&b"ab"[..], b"", b"xyz"]
    );
    assert_eq!(decode_bundle(b"").unwrap(), Vec::<&[u8]>::new());
    assert_eq!(
        decode_bundle(b"\x00"),
        Err(BundleError::Truncated { offset: 0 })
    );
    assert_eq!(
        decode_bundle(b"\x00\x02a"),
        Err(BundleError::Truncated { offset: 0 })
    );
    assert_eq!(
        decode_bundle(b"\x00\x01a\x01\x00"),
        Err(BundleError::Truncated { offset: 3 })
    );
    assert_eq!(
        decode_bundle(b"\x00\x01a\x00"),
        Err(BundleError::Truncated { offset: 3 })
    );
}

/// Tiles by brute force: tile (L, n) holds the complete level-8L nodes with index in
/// [n * 256, (n + 1) * 256).
fn brute_width(size: u64, level: u8, index: u64) -> u16 {
    let l = u32::from(level) * 8;
    (index * 256..(index + 1) * 256)
        .filter(|&i| l < 64 && (i + 1).checked_shl(l).is_some_and(|end| end <= size))
        .count() as u16
}

#[test]
fn tile_width_matches_brute_force() {
    let sizes = (0..=1100u64).chain([65_535, 65_536, 65_537, 70_000, 16_777_216, 16_777_217]);
    for size in sizes {
        for level in 0..4u8 {
            for index in 0..6u64 {
                assert_eq!(
                    tile_width_for(size, level, index),
                    brute_width(size, level, index),
                    "size {size} level {level} index {index}"
                );
            }
        }
    }
    // Large indices: the spec example, tile by tile.
    for index in 0..300 {
        assert_eq!(
            tile_width_for(70_000, 0, index),
            brute_width(70_000, 0, index)
        );
    }
}

/// Every complete node of a 1100-leaf tree is recomputed from the tile hashes `tile_for_node`
/// names, and those hashes exist in the tile for exactly the tree sizes containing the node.
#[test]
fn tile_for_node_against_brute_force() {
    const SIZE: u64 = 1100;
    let mut frontier = Frontier::new();
    let mut nodes: HashMap<NodeId, Hash> = HashMap::new();
    for i in 0..SIZE {
        nodes.extend(frontier.append(leaf_hash(&i.to_be_bytes())));
    }
    let mut checked = 0;
    for (&id, &hash) in &nodes {
        let (tile_level, tile_index, offset, count) = tile_for_node(id);
        assert_eq!(tile_level, id.level / TILE_HEIGHT);
        assert_eq!(u64::from(count), 1 << (id.level % TILE_HEIGHT));
        assert!(u64::from(offset) + u64::from(count) <= TILE_WIDTH);
        // The named tile hashes are the level-8L nodes under this node.
        let base = u32::from(tile_level * TILE_HEIGHT);
        let first = tile_index * TILE_WIDTH + u64::from(offset);
        assert_eq!(
            first << base,
            id.index << id.level,
            "{id:?} starts at the same leaf"
        );
        let tile_hashes: Vec<Hash> = (first..first + u64::from(count))
            .map(|i| nodes[&NodeId::new(base as u8, i)])
            .collect();
        assert_eq!(root_of_leaf_hashes(&tile_hashes), hash, "{id:?}");
        // Complete in a tree of size s <=> the tile holds the hashes for size s.
        let end = (id.index + 1) << id.level;
        for size in [end - 1, end, end + 1, SIZE] {
            let width = tile_width_for(size, tile_level, tile_index);
            assert_eq!(
                u64::from(width) >= u64::from(offset) + u64::from(count),
                end <= size,
                "{id:?} size {size}"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 2 * SIZE as usize - SIZE.count_ones() as usize);
}
