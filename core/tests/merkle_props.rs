//! Property tests: every proof the builders produce verifies, every mutation of it fails, and
//! the three ways of computing a root agree.

use std::cell::RefCell;
use std::collections::HashMap;

use kt_core::hash::{leaf_hash, Hash};
use kt_core::merkle::{
    consistency_proof, inclusion_proof, range_nodes, root_hash, root_of_leaf_hashes,
    verify_consistency, verify_inclusion, Frontier, HashReader, NodeId, VerifyError,
};
use proptest::prelude::*;

/// Every completed node, as returned by `Frontier::append`; records each `read_hashes` call.
struct MemoryTree {
    leaves: Vec<Hash>,
    nodes: HashMap<NodeId, Hash>,
    frontier: Frontier,
    reads: RefCell<Vec<usize>>,
}

impl MemoryTree {
    fn new(size: u64) -> Self {
        let mut tree = Self {
            leaves: Vec::new(),
            nodes: HashMap::new(),
            frontier: Frontier::new(),
            reads: RefCell::new(Vec::new()),
        };
        for i in 0..size {
            let leaf = leaf_hash(&i.to_le_bytes());
            tree.leaves.push(leaf);
            let done = tree.frontier.append(leaf);
            assert_eq!(done[0], (NodeId::new(0, i), leaf));
            for (id, hash) in done {
                assert!(
                    tree.nodes.insert(id, hash).is_none(),
                    "{id:?} completed twice"
                );
            }
        }
        tree
    }

    /// Ids read by the calls since the last check; asserts there was exactly one call.
    fn take_single_read(&self) -> usize {
        let reads = self.reads.take();
        assert_eq!(reads.len(), 1, "one read_hashes call per proof");
        reads[0]
    }
}

impl HashReader for MemoryTree {
    type Error = NodeId;
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, NodeId> {
        self.reads.borrow_mut().push(ids.len());
        ids.iter()
            .map(|id| self.nodes.get(id).copied().ok_or(*id))
            .collect()
    }
}

/// Bound on the ids one proof may read: O(log n).
fn max_ids(size: u64) -> usize {
    2 * (64 - size.leading_zeros() as usize) + 2
}

/// A tree size, an index in it, and a smaller-or-equal non-zero size.
fn sizes() -> impl Strategy<Value = (u64, u64, u64)> {
    (1u64..600).prop_flat_map(|n| (Just(n), 0..n, 1..=n))
}

/// Every way of corrupting a proof the tests below try, each with a description.
fn mutations(proof: &[Hash]) -> Vec<(String, Vec<Hash>)> {
    let mut out = Vec::new();
    for i in 0..proof.len() {
        for bit in [0, 7, 8 * 31 + 7] {
            let mut p = proof.to_vec();
            p[i][bit / 8] ^= 1 << (bit % 8);
            out.push((format!("flip bit {bit} of hash {i}"), p));
        }
        let mut p = proof.to_vec();
        p.remove(i);
        out.push((format!("remove hash {i}"), p));
        let mut p = proof.to_vec();
        p.insert(i, proof[i]);
        out.push((format!("duplicate hash {i}"), p));
    }
    for at in [0, proof.len()] {
        let mut p = proof.to_vec();
        p.insert(at, [0x42; 32]);
        out.push((format!("extra hash at {at}"), p));
    }
    if proof.len() > 1 {
        let mut p = proof.to_vec();
        p.swap(0, 1);
        if p != proof {
            out.push(("swap first two".to_owned(), p));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn roots_agree(size in 0u64..2000) {
        let tree = MemoryTree::new(size);
        let root = root_of_leaf_hashes(&tree.leaves);
        prop_assert_eq!(tree.frontier.root(), root);
        prop_assert_eq!(tree.frontier.size(), size);
        prop_assert_eq!(root_hash(&tree, size).unwrap(), root);
        if size > 0 {
            prop_assert!(tree.take_single_read() <= max_ids(size));
        }
        let ids = Frontier::node_ids(size);
        prop_assert_eq!(&ids, &range_nodes(0, size));
        let rebuilt = Frontier::from_hashes(size, tree.read_hashes(&ids).unwrap()).unwrap();
        prop_assert_eq!(&rebuilt, &tree.frontier);
    }

    #[test]
    fn frontier_resumes_from_storage(size in 0u64..500, more in 1u64..300) {
        let full = MemoryTree::new(size + more);
        let prefix = MemoryTree::new(size);
        let ids = Frontier::node_ids(size);
        let mut resumed = Frontier::from_hashes(size, prefix.read_hashes(&ids).unwrap()).unwrap();
        for leaf in &full.leaves[size as usize..] {
            for (id, hash) in resumed.append(*leaf) {
                prop_assert_eq!(full.nodes.get(&id), Some(&hash));
            }
        }
        prop_assert_eq!(resumed, full.frontier);
    }

    #[test]
    fn range_nodes_tile_the_range(start in 0u64..5000, len in 0u64..5000) {
        let end = start + len;
        let nodes = range_nodes(start, end);
        let mut at = start;
        for id in &nodes {
            prop_assert_eq!(id.index << id.level, at, "contiguous and aligned");
            at += 1 << id.level;
        }
        prop_assert_eq!(at, end);
        prop_assert!(nodes.len() <= 2 * 13 + 2);
        // Maximal: no two neighbours merge into one aligned subtree.
        for w in nodes.windows(2) {
            prop_assert!(!(w[0].level == w[1].level && w[0].index % 2 == 0));
        }
    }

    #[test]
    fn inclusion_proofs_verify_and_mutations_fail((size, index, _) in sizes()) {
        let tree = MemoryTree::new(size);
        let root = tree.frontier.root();
        let leaf = tree.leaves[index as usize];
        let proof = inclusion_proof(&tree, index, size).unwrap();
        if size > 1 {
            prop_assert!(tree.take_single_read() <= max_ids(size));
        }
        prop_assert_eq!(verify_inclusion(&leaf, index, size, &proof, &root), Ok(()));

        for (what, bad) in mutations(&proof) {
            prop_assert!(verify_inclusion(&leaf, index, size, &bad, &root).is_err(), "{}", what);
        }
        let mut other_leaf = leaf;
        other_leaf[5] ^= 4;
        prop_assert_eq!(
            verify_inclusion(&other_leaf, index, size, &proof, &root),
            Err(VerifyError::RootMismatch)
        );
        let mut other_root = root;
        other_root[31] ^= 1;
        prop_assert!(verify_inclusion(&leaf, index, size, &proof, &other_root).is_err());
        // A different leaf of the same tree has a different path, so every wrong index fails.
        for wrong_index in [index ^ 1, index + 1, index.wrapping_sub(1), index ^ 2, size] {
            if wrong_index != index {
                prop_assert!(
                    verify_inclusion(&leaf, wrong_index, size, &proof, &root).is_err(),
                    "index {}", wrong_index
                );
            }
        }
        // Not every wrong size fails: the proof of leaf 0 in a tree of 4 also chains to the
        // same root as a "tree of 3" (RFC 9162 verification binds the size through the root
        // only). Doubling or halving the size always changes the path length.
        for wrong_size in [size * 2, size / 2] {
            if wrong_size != size {
                prop_assert!(
                    verify_inclusion(&leaf, index, wrong_size, &proof, &root).is_err(),
                    "size {}", wrong_size
                );
            }
        }
    }

    #[test]
    fn consistency_proofs_verify_and_mutations_fail((size, _, old) in sizes()) {
        let tree = MemoryTree::new(size);
        let root = tree.frontier.root();
        let old_root = root_of_leaf_hashes(&tree.leaves[..old as usize]);
        let proof = consistency_proof(&tree, old, size).unwrap();
        if old < size {
            prop_assert!(tree.take_single_read() <= max_ids(size));
        } else {
            prop_assert!(proof.is_empty());
        }
        prop_assert_eq!(verify_consistency(old, size, &proof, &old_root, &root), Ok(()));

        if old == size {
            prop_assert_eq!(
                verify_consistency(old, size, &[root], &old_root, &root),
                Err(VerifyError::NonEmptyProofForEqualSizes)
            );
            return Ok(());
        }
        for (what, bad) in mutations(&proof) {
            prop_assert!(
                verify_consistency(old, size, &bad, &old_root, &root).is_err(), "{}", what
            );
        }
        prop_assert_eq!(
            verify_consistency(old, size, &[], &old_root, &root),
            Err(VerifyError::EmptyProofForDifferentSizes)
        );
        prop_assert!(verify_consistency(old, size, &proof, &root, &old_root).is_err());
        let (mut wrong_old_root, mut wrong_root) = (old_root, root);
        wrong_old_root[0] ^= 0x80;
        wrong_root[17] ^= 2;
        prop_assert_eq!(
            verify_consistency(old, size, &proof, &wrong_old_root, &root),
            Err(VerifyError::RootMismatch)
        );
        prop_assert_eq!(
            verify_consistency(old, size, &proof, &old_root, &wrong_root),
            Err(VerifyError::RootMismatch)
        );
        for wrong_old in [old + 1, old - 1, old ^ 2, old * 2] {
            if wrong_old != old {
                prop_assert!(
                    verify_consistency(wrong_old, size, &proof, &old_root, &root).is_err(),
                    "old {}", wrong_old
                );
            }
        }
        // As for inclusion, only doubling or halving is sure to change the path.
        for wrong_new in [size * 2, size / 2] {
            if wrong_new != size {
                prop_assert!(
                    verify_consistency(old, wrong_new, &proof, &old_root, &root).is_err(),
                    "new {}", wrong_new
                );
            }
        }
    }
}
