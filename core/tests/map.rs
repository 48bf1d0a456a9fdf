//! The map: proofs for random sets of labels verify, every mutation of a proof fails, and the
//! root depends only on the final set of (label, value) pairs.

use kt_core::directory::Label;
use kt_core::hash::sha256;
use kt_core::map::{self, MapProof, MapValue, MemoryMap, Terminal, EMPTY_HASH};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn label(seed: u64) -> Label {
    Label::from_bytes(sha256(&seed.to_be_bytes()))
}

fn value(seed: u64, version: u64) -> MapValue {
    MapValue::new(
        version,
        sha256(&[seed.to_le_bytes(), version.to_le_bytes()].concat()),
        seed * 3 + version,
    )
}

fn build(seeds: impl Iterator<Item = u64>) -> (MemoryMap, BTreeMap<Label, MapValue>) {
    let set: BTreeMap<Label, MapValue> = seeds.map(|s| (label(s), value(s, 1))).collect();
    let mut m = MemoryMap::new();
    m.apply(&set);
    (m, set)
}

#[test]
fn empty_map_proves_every_label_absent() {
    let m = MemoryMap::new();
    assert_eq!(m.root(), EMPTY_HASH);
    let proof = map::prove(&m, &label(1)).unwrap();
    assert!(proof.siblings().is_empty());
    assert_eq!(map::verify(&EMPTY_HASH, &label(1), &proof), Ok(None));
}

#[test]
fn one_leaf_map_is_that_leaf() {
    let (m, set) = build(0..1);
    let (l, v) = set.iter().next().unwrap();
    assert_eq!(m.root(), map::leaf_hash(l, v));
    let proof = map::prove(&m, l).unwrap();
    assert_eq!(map::verify(&m.root(), l, &proof), Ok(Some(*v)));
    // Another label is proven absent by the same lone leaf.
    let other = map::prove(&m, &label(99)).unwrap();
    assert_eq!(map::verify(&m.root(), &label(99), &other), Ok(None));
}

#[test]
fn ten_thousand_labels_membership_and_non_membership() {
    let (m, set) = build(0..10_000);
    let root = m.root();
    let mut depths = Vec::new();
    for (l, v) in &set {
        let proof = map::prove(&m, l).unwrap();
        depths.push(proof.siblings().len());
        let decoded = MapProof::decode(&proof.encode()).unwrap();
        assert_eq!(decoded, proof);
        assert_eq!(map::verify(&root, l, &decoded), Ok(Some(*v)), "label {l}");
    }
    for s in 10_000..12_000 {
        let l = label(s);
        let proof = map::prove(&m, &l).unwrap();
        assert_eq!(map::verify(&root, &l, &proof), Ok(None), "absent label {l}");
    }
    // log2(10,000) is about 13.3: paths stay logarithmic.
    let max = *depths.iter().max().unwrap();
    assert!(max < 40, "deepest path {max}");
}

#[test]
fn every_mutated_proof_fails() {
    let (m, _) = build(0..2_000);
    let root = m.root();
    for s in (0..2_000).step_by(97).chain(5_000..5_010) {
        let l = label(s);
        let proof = map::prove(&m, &l).unwrap();
        let good = map::verify(&root, &l, &proof).unwrap();
        let bytes = proof.encode();
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 0x80 >> (bit % 8);
            if let Ok(p) = MapProof::decode(&bad) {
                assert!(
                    map::verify(&root, &l, &p).is_err(),
                    "seed {s}: flipping bit {bit} still verifies (was {good:?})"
                );
            }
        }
        for cut in 0..bytes.len() {
            assert!(
                MapProof::decode(&bytes[..cut]).is_err(),
                "truncated to {cut}"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(MapProof::decode(&long).is_err());
        // The right proof for another root, or for another label, fails.
        assert!(map::verify(&sha256(b"other"), &l, &proof).is_err());
        // The same proof presented for a label with another path fails (labels of seeds in the
        // map have their own leaf; absent ones are checked against their own path).
        let other = label(s ^ 1);
        let claimed = map::verify(&root, &other, &proof);
        assert!(claimed.is_err() || claimed == Ok(None) && good.is_none());
    }
}

#[test]
fn non_canonical_proofs_are_refused() {
    let (m, set) = build(0..100);
    let (l, v) = set.iter().next().unwrap();
    let proof = map::prove(&m, l).unwrap();
    // Walking one empty level further down still hashes to the root, but is not the canonical
    // path, so it must not verify.
    let mut deeper = proof.siblings().to_vec();
    deeper.push(EMPTY_HASH);
    let padded = MapProof::new(deeper, proof.terminal().clone());
    assert_eq!(
        map::verify(&m.root(), l, &padded),
        Err(map::MapProofError::NotCanonical)
    );
    // A leaf that is not on the label's path cannot prove absence.
    let (far, far_value) = set
        .iter()
        .find(|(o, _)| o.as_bytes()[0] >> 7 != l.as_bytes()[0] >> 7)
        .unwrap();
    let lying = MapProof::new(
        proof.siblings().to_vec(),
        Terminal::Leaf {
            label: *far,
            value: *far_value,
        },
    );
    assert_eq!(
        map::verify(&m.root(), l, &lying),
        Err(map::MapProofError::LeafOffPath)
    );
    let _ = v;
}

#[test]
fn root_is_independent_of_batching_and_order() {
    let (whole, set) = build(0..3_000);
    let mut one_by_one = MemoryMap::new();
    for (l, v) in set.iter().rev() {
        one_by_one.apply(&BTreeMap::from([(*l, *v)]));
    }
    assert_eq!(one_by_one.root(), whole.root());
    let mut chunks = MemoryMap::new();
    let items: Vec<_> = set.iter().collect();
    for chunk in items.chunks(377) {
        chunks.apply(&chunk.iter().map(|(l, v)| (**l, **v)).collect());
    }
    assert_eq!(chunks.root(), whole.root());
}

#[test]
fn updating_values_matches_building_the_final_set() {
    let (mut m, set) = build(0..2_000);
    let bumped: BTreeMap<Label, MapValue> = (0..2_000)
        .step_by(3)
        .map(|s| (label(s), value(s, 2)))
        .collect();
    m.apply(&bumped);
    let mut fresh_set = set.clone();
    fresh_set.extend(bumped.clone());
    let mut fresh = MemoryMap::new();
    fresh.apply(&fresh_set);
    assert_eq!(m.root(), fresh.root());
    for (l, v) in &bumped {
        let proof = map::prove(&m, l).unwrap();
        assert_eq!(map::verify(&m.root(), l, &proof), Ok(Some(*v)));
    }
}

#[test]
fn labels_that_part_at_the_last_bit() {
    let base = [0xa5u8; 32];
    let mut twin = base;
    twin[31] ^= 1;
    let (a, b) = (Label::from_bytes(base), Label::from_bytes(twin));
    let mut m = MemoryMap::new();
    m.apply(&BTreeMap::from([(a, value(1, 1)), (b, value(2, 1))]));
    for (l, v) in [(a, value(1, 1)), (b, value(2, 1))] {
        let proof = map::prove(&m, &l).unwrap();
        assert_eq!(proof.siblings().len(), 256);
        assert_eq!(
            MapProof::decode(&proof.encode()).unwrap(),
            proof,
            "deepest proof round-trips"
        );
        assert_eq!(map::verify(&m.root(), &l, &proof), Ok(Some(v)));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_split_into_epochs_gives_the_same_root(
        seeds in prop::collection::btree_set(0u64..5_000, 1..200),
        cuts in prop::collection::vec(0usize..200, 0..8),
        probe in 0u64..5_000,
    ) {
        let seeds: Vec<u64> = seeds.into_iter().collect();
        let (whole, set) = build(seeds.iter().copied());
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % seeds.len()).collect();
        cuts.sort_unstable();
        let mut epochs = MemoryMap::new();
        let mut start = 0;
        for end in cuts.into_iter().chain([seeds.len()]) {
            let batch = seeds[start..end.max(start)]
                .iter()
                .map(|s| (label(*s), value(*s, 1)))
                .collect();
            epochs.apply(&batch);
            start = end.max(start);
        }
        prop_assert_eq!(epochs.root(), whole.root());
        let l = label(probe);
        let proof = map::prove(&epochs, &l).unwrap();
        prop_assert_eq!(map::verify(&whole.root(), &l, &proof).unwrap(), set.get(&l).copied());
    }
}

/// The root straight from the table of docs/protocol.md §10, with no pages: nothing → zeros, one
/// label → its leaf hash, more → the node hash of the two halves split by the next bit.
fn reference_root(items: &[(Label, MapValue)], depth: usize) -> kt_core::hash::Hash {
    match items {
        [] => EMPTY_HASH,
        [(l, v)] => map::leaf_hash(l, v),
        _ => {
            let split = items.partition_point(|(l, _)| map::label_bit(l, depth) == 0);
            let (left, right) = items.split_at(split);
            map::node_hash(
                &reference_root(left, depth + 1),
                &reference_root(right, depth + 1),
            )
        }
    }
}

#[test]
fn paged_root_equals_the_reference_definition() {
    for n in [0u64, 1, 2, 3, 17, 256, 5_000] {
        let (m, set) = build(0..n);
        let items: Vec<_> = set.into_iter().collect();
        assert_eq!(m.root(), reference_root(&items, 0), "{n} labels");
    }
    // Labels sharing long prefixes, down to the last bit.
    let mut items = Vec::new();
    for i in 0..40u8 {
        let mut b = [0x3c; 32];
        b[31] = i;
        items.push((Label::from_bytes(b), value(u64::from(i), 1)));
    }
    let mut m = MemoryMap::new();
    m.apply(&items.iter().copied().collect());
    assert_eq!(m.root(), reference_root(&items, 0));
}

#[test]
fn an_empty_terminal_next_to_a_lone_leaf_is_refused() {
    // Two labels that part at the first bit: each sits alone under the root's children.
    let a = Label::from_bytes([0x00; 32]);
    let b = Label::from_bytes([0xff; 32]);
    let mut m = MemoryMap::new();
    m.apply(&BTreeMap::from([(a, value(1, 1)), (b, value(2, 1))]));
    // Claim that a label under `a`'s side is absent by an empty node one level below, next to
    // `a`'s leaf hash: the tree would have pulled `a` up, so this must not verify.
    let probe = Label::from_bytes([0x40; 32]);
    let forged = MapProof::new(
        vec![
            map::leaf_hash(&b, &value(2, 1)),
            map::leaf_hash(&a, &value(1, 1)),
        ],
        Terminal::Empty,
    );
    assert!(map::verify(&m.root(), &probe, &forged).is_err());
    // The honest proof for the probe ends at `a`'s leaf and proves absence.
    let honest = map::prove(&m, &probe).unwrap();
    assert_eq!(map::verify(&m.root(), &probe, &honest), Ok(None));
}

#[test]
fn deep_leaves_split_and_update_in_later_epochs() {
    let base = [0x5a; 32];
    let mut twin = base;
    twin[31] ^= 0x01; // parts at the very last bit (nibble 63)
    let mut cousin = base;
    cousin[31] ^= 0x10; // parts at nibble 62
    let (a, b, c) = (
        Label::from_bytes(base),
        Label::from_bytes(twin),
        Label::from_bytes(cousin),
    );
    let mut m = MemoryMap::new();
    m.apply(&BTreeMap::from([(a, value(1, 1))]));
    m.apply(&BTreeMap::from([(b, value(2, 1))]));
    m.apply(&BTreeMap::from([(c, value(3, 1))]));
    m.apply(&BTreeMap::from([(a, value(1, 2)), (b, value(2, 2))]));
    let items = vec![(a, value(1, 2)), (b, value(2, 2)), (c, value(3, 1))];
    let mut sorted = items.clone();
    sorted.sort_by_key(|(l, _)| *l);
    assert_eq!(m.root(), reference_root(&sorted, 0));
    for (l, v) in items {
        let proof = map::prove(&m, &l).unwrap();
        assert_eq!(map::verify(&m.root(), &l, &proof), Ok(Some(v)));
    }
}

/// Pages in a map, with one replaced: for the corruption checks of the update path.
struct Tampered {
    inner: MemoryMap,
    path: map::PagePath,
    page: map::Page,
}

impl map::PageReader for Tampered {
    type Error = std::convert::Infallible;
    fn read_page(&self, path: &map::PagePath) -> Result<Option<map::Page>, Self::Error> {
        if *path == self.path {
            return Ok(Some(self.page.clone()));
        }
        self.inner.read_page(path)
    }
}

#[test]
fn updates_refuse_to_build_on_corrupt_pages() {
    use map::PageReader as _;
    let (m, set) = build(0..300);
    let (l, _) = set.iter().next().unwrap();
    let path = map::PagePath::of_label(l, 1);
    let mut page = m
        .read_page(&path)
        .unwrap()
        .expect("300 labels fill the second level");
    // A page that no longer hashes to its parent's sub-page hash.
    let slot = page.children.iter().position(Option::is_some).unwrap();
    page.children[slot] = None;
    let tampered = Tampered {
        inner: m.clone(),
        path,
        page,
    };
    let update = BTreeMap::from([(*l, value(9, 9))]);
    assert!(matches!(
        map::apply_updates(&tampered, &update),
        Err(map::MapError::CorruptPage { .. })
    ));
    // A leaf stored in a slot its label does not belong to.
    let mut misplaced = m.read_page(&path).unwrap().unwrap();
    let (from, to) = (
        misplaced
            .children
            .iter()
            .position(|c| matches!(c, Some(map::Child::Leaf { .. }))),
        misplaced.children.iter().position(Option::is_none),
    );
    if let (Some(from), Some(to)) = (from, to) {
        misplaced.children.swap(from, to);
        let tampered = Tampered {
            inner: m,
            path,
            page: misplaced,
        };
        assert!(map::apply_updates(&tampered, &update).is_err());
    }
}

/// A reader that shows one page altered (`Some(page)`) or lost (`None`).
struct OnePageTampered<'a> {
    map: &'a MemoryMap,
    path: map::PagePath,
    page: Option<map::Page>,
}

impl map::PageReader for OnePageTampered<'_> {
    type Error = std::convert::Infallible;
    fn read_page(&self, path: &map::PagePath) -> Result<Option<map::Page>, Self::Error> {
        if *path == self.path {
            return Ok(self.page.clone());
        }
        map::PageReader::read_page(self.map, path)
    }
}

#[test]
fn the_full_tree_check_finds_any_altered_or_lost_page_below_the_root() {
    let (m, entries) = build(0..3_000);
    let (root, count) = map::verify_tree(&m).unwrap();
    assert_eq!((root, count), (m.root(), entries.len() as u64));
    assert_eq!(
        map::verify_tree(&MemoryMap::new()).unwrap(),
        (EMPTY_HASH, 0)
    );

    // A page one level down: its parent's root still gives the signed root, so only a walk
    // of the whole tree can notice it.
    let top = map::PageReader::read_page(&m, &map::PagePath::root())
        .unwrap()
        .unwrap();
    let slot = top
        .children
        .iter()
        .position(|c| matches!(c, Some(map::Child::Subpage(_))))
        .unwrap();
    let path = map::PagePath::root().child(slot).unwrap();
    let page = map::PageReader::read_page(&m, &path).unwrap().unwrap();

    let mut altered = page.clone();
    let leaf = altered.children.iter_mut().flatten().find_map(|c| match c {
        map::Child::Leaf { value, .. } => Some(value),
        _ => None,
    });
    match leaf {
        Some(value) => value.version += 1,
        None => {
            // Only subpages here: point one at another hash.
            let sub = altered.children.iter_mut().flatten().next().unwrap();
            *sub = map::Child::Subpage([9; 32]);
        }
    }
    let err = map::verify_tree(&OnePageTampered {
        map: &m,
        path,
        page: Some(altered),
    })
    .unwrap_err();
    assert!(matches!(err, map::MapError::CorruptPage { .. }), "{err}");

    let err = map::verify_tree(&OnePageTampered {
        map: &m,
        path,
        page: None,
    })
    .unwrap_err();
    assert!(
        matches!(err, map::MapError::MissingPage(p) if p == path),
        "{err}"
    );
}
