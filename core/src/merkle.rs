//! The RFC 9162 §2.1 Merkle tree over SHA-256: proofs, their verification, and the frontier.
//!
//! Terms used throughout:
//!
//! - A *complete subtree* ([`NodeId`]) at level `l` and index `i` covers the leaves
//!   `[i << l, (i + 1) << l)`. Only complete subtrees are ever stored or read: they never change
//!   once the tree has grown past them, so storage is append-only.
//! - The RFC tree of `n > 1` leaves splits at the largest power of two `k < n`. Every range
//!   `[a, b)` that the RFC recursion visits has `a` aligned to a power of two `>= b - a`, so its
//!   left part is a complete subtree and its hash is the fold, from the right, of the hashes of
//!   its decomposition into maximal complete subtrees ([`range_nodes`]). This is how the proof
//!   builders turn the RFC's `MTH(D[a:b])` into a handful of stored hashes.
//!
//! Builders read storage through [`HashReader`] with exactly one `read_hashes` call of
//! O(log n) ids per proof. Verifiers need no reader: they follow the bit-twiddling algorithms of
//! RFC 9162 §2.1.3.2 and §2.1.4.2, and the edge cases of transparency-dev/merkle's
//! `proof.VerifyInclusion` / `proof.VerifyConsistency`, whose test vectors they pass.

use crate::hash::{empty_root, node_hash, Hash};

/// A complete subtree: covers leaves `[index << level, (index + 1) << level)`.
///
/// Level 0 nodes are leaf hashes. The derived order sorts by level, then index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Height above the leaves (0 = a leaf hash). At most 63 in a tree of `u64` size.
    pub level: u8,
    /// Position among the nodes of this level, left to right.
    pub index: u64,
}

impl NodeId {
    /// A node by level and index.
    pub const fn new(level: u8, index: u64) -> Self {
        Self { level, index }
    }
}

/// Storage reaches the proof builders only through this (cf. cloudflare/azul tlog_core
/// `read_hashes`), so the math stays pure and every backend gets the same proofs.
///
/// Implementations return hashes in the order of `ids`, one per id (a different count is
/// reported as [`ProofError::ReaderReturnedWrongCount`]). Only complete subtrees of the tree in
/// question are ever requested, and each builder makes exactly one call, so a backend can plan
/// its reads (e.g. group ids by tile with [`crate::tiles::tile_for_node`]).
pub trait HashReader {
    /// The backend's read error, passed through as [`ProofError::Read`].
    type Error;
    /// Returns the hash of every node in `ids`, in order.
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Self::Error>;
}

/// Why a proof could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError<E> {
    /// Inclusion proof asked for a leaf the tree does not have.
    #[error("index {index} out of range for tree size {size}")]
    IndexOutOfRange {
        /// Requested leaf index.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// Consistency proof asked for `old_size > new_size`, or from the empty tree (which every
    /// tree extends, so such a proof is meaningless; transparency-dev/merkle refuses it too).
    #[error("invalid consistency range {old_size} to {new_size}")]
    InvalidRange {
        /// Size of the older tree.
        old_size: u64,
        /// Size of the newer tree.
        new_size: u64,
    },
    /// The storage backend failed.
    #[error("reading hashes")]
    Read(#[source] E),
    /// The storage backend broke the [`HashReader`] contract.
    #[error("reader returned {got} hashes for {want} ids")]
    ReaderReturnedWrongCount {
        /// Hashes returned.
        got: usize,
        /// Ids requested.
        want: usize,
    },
}

/// Why a proof (or a frontier) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Inclusion of a leaf the claimed tree cannot contain.
    #[error("index {index} out of range for tree size {size}")]
    IndexOutOfRange {
        /// Claimed leaf index.
        index: u64,
        /// Claimed tree size.
        size: u64,
    },
    /// The proof does not have the one length the sizes allow.
    #[error("wrong proof size {got}, want {want}")]
    WrongProofSize {
        /// Hashes in the proof.
        got: usize,
        /// Hashes the sizes call for.
        want: usize,
    },
    /// The proof leads to a different root than claimed.
    #[error("root mismatch")]
    RootMismatch,
    /// The "new" tree is smaller than the old one.
    #[error("tree sizes decreasing: {old} to {new}")]
    SizesDecreasing {
        /// Size of the older tree.
        old: u64,
        /// Size of the newer tree.
        new: u64,
    },
    /// Consistency from the empty tree proves nothing; as in transparency-dev/merkle, it is
    /// rejected whatever the proof (a client with no state simply trusts its first checkpoint).
    #[error("consistency from the empty tree")]
    EmptyOldTree,
    /// Different sizes need a non-empty proof.
    #[error("empty proof for different sizes")]
    EmptyProofForDifferentSizes,
    /// Equal sizes need an empty proof (and equal roots).
    #[error("non-empty proof for equal sizes")]
    NonEmptyProofForEqualSizes,
    /// A frontier needs one hash per set bit of its size.
    #[error("wrong frontier size {got}, want {want}")]
    WrongFrontierSize {
        /// Hashes given.
        got: usize,
        /// Set bits in the tree size.
        want: usize,
    },
}

/// RFC 9162 MTH over already-hashed leaves (treats `leaves` as level-0 node hashes).
/// Empty => [`empty_root`]. O(n) hashing, O(log n) memory.
pub fn root_of_leaf_hashes(leaves: &[Hash]) -> Hash {
    let mut frontier = Frontier::new();
    for leaf in leaves {
        frontier.push(*leaf, |_, _| {});
    }
    frontier.root()
}

/// Decompose `[start, end)` into the maximal aligned complete subtrees, left to right.
///
/// Each step takes the biggest subtree that starts at `start` (limited by the alignment of
/// `start`) and fits before `end`, so sizes first grow then shrink and there are at most
/// 2·64 nodes. `start >= end` gives no nodes.
pub fn range_nodes(start: u64, end: u64) -> Vec<NodeId> {
    let mut nodes = Vec::new();
    let mut start = start;
    while start < end {
        let aligned = if start == 0 {
            63
        } else {
            start.trailing_zeros()
        };
        let fits = (end - start).ilog2();
        let level = aligned.min(fits);
        nodes.push(NodeId::new(level as u8, start >> level));
        start += 1 << level;
    }
    nodes
}

/// The root hash of the tree of `size` leaves: `O(log size)` ids in one read.
pub fn root_hash<R: HashReader>(reader: &R, size: u64) -> Result<Hash, ProofError<R::Error>> {
    if size == 0 {
        return Ok(empty_root());
    }
    let mut plan = Plan::default();
    plan.push_range(0, size);
    let root = plan.execute(reader)?;
    Ok(root[0])
}

/// The RFC 9162 §2.1.3.1 inclusion proof `PATH(index, D[0:size])`, leaf level first.
pub fn inclusion_proof<R: HashReader>(
    reader: &R,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError<R::Error>> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    // The RFC recursion, top down: each step emits the sibling range of the half holding
    // `index` and descends into that half. The RFC lists the hashes bottom up, hence the
    // reversal.
    let mut plan = Plan::default();
    let (mut lo, mut hi) = (0, size);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index - lo < k {
            plan.push_range(lo + k, hi);
            hi = lo + k;
        } else {
            plan.push_range(lo, lo + k);
            lo += k;
        }
    }
    plan.elems.reverse();
    plan.execute(reader)
}

/// The RFC 9162 §2.1.4.1 consistency proof `PROOF(old_size, D[0:new_size])`.
///
/// Equal sizes give the empty proof. `old_size == 0` is refused (see
/// [`ProofError::InvalidRange`]), as is `old_size > new_size`.
pub fn consistency_proof<R: HashReader>(
    reader: &R,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, ProofError<R::Error>> {
    if old_size == 0 || old_size > new_size {
        return Err(ProofError::InvalidRange { old_size, new_size });
    }
    // SUBPROOF(m, D[lo:hi], b), top down, in absolute leaf positions: `old_size` is always the
    // absolute end of the old tree.
    let mut plan = Plan::default();
    let (mut lo, mut hi, mut whole_old_tree) = (0, new_size, true);
    loop {
        if old_size == hi {
            // m == n: the old tree's subtree itself, unless the verifier already has it
            // (it is the whole old tree).
            if !whole_old_tree {
                plan.push_range(lo, hi);
            }
            break;
        }
        let k = split_point(hi - lo);
        if old_size - lo <= k {
            plan.push_range(lo + k, hi);
            hi = lo + k;
        } else {
            plan.push_range(lo, lo + k);
            lo += k;
            whole_old_tree = false;
        }
    }
    plan.elems.reverse();
    plan.execute(reader)
}

/// Verifies an inclusion proof per RFC 9162 §2.1.3.2.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), VerifyError> {
    if index >= size {
        return Err(VerifyError::IndexOutOfRange { index, size });
    }
    // Checked up front for a precise error; the RFC's own length checks below then hold.
    let want = inclusion_proof_len(index, size);
    let wrong_size = VerifyError::WrongProofSize {
        got: proof.len(),
        want,
    };
    if proof.len() != want {
        return Err(wrong_size);
    }

    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if sn == 0 {
            return Err(wrong_size);
        }
        if is_odd(fn_) || fn_ == sn {
            r = node_hash(p, &r);
            if !is_odd(fn_) {
                while !is_odd(fn_) && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(wrong_size);
    }
    if r != *root {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

/// Verifies a consistency proof per RFC 9162 §2.1.4.2, with transparency-dev/merkle's edge
/// cases: `old_size > new_size` and `old_size == 0` are errors; equal sizes need an empty proof
/// and equal roots; different sizes need a non-empty proof.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    proof: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), VerifyError> {
    if old_size > new_size {
        return Err(VerifyError::SizesDecreasing {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == 0 {
        return Err(VerifyError::EmptyOldTree);
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(VerifyError::NonEmptyProofForEqualSizes);
        }
        if old_root != new_root {
            return Err(VerifyError::RootMismatch);
        }
        return Ok(());
    }
    if proof.is_empty() {
        return Err(VerifyError::EmptyProofForDifferentSizes);
    }
    let want = consistency_proof_len(old_size, new_size);
    let wrong_size = VerifyError::WrongProofSize {
        got: proof.len(),
        want,
    };
    if proof.len() != want {
        return Err(wrong_size);
    }

    // Step 2: if the old tree is a complete subtree, the verifier knows its hash already and
    // the RFC prepends it to the path.
    let (seed, rest) = if old_size.is_power_of_two() {
        (old_root, proof)
    } else {
        (&proof[0], &proof[1..])
    };
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while is_odd(fn_) {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*seed, *seed);
    for c in rest {
        if sn == 0 {
            return Err(wrong_size);
        }
        if is_odd(fn_) || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if !is_odd(fn_) {
                while !is_odd(fn_) && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(wrong_size);
    }
    if fr != *old_root || sr != *new_root {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

/// The right border of a tree ("compact range" `[0, size)`), as held by the sequencer and the
/// auditor: one hash per set bit of `size`, biggest subtree first. Memory is O(log n), so
/// neither has to hold the log to extend it or to compute its root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
}

impl Default for Frontier {
    fn default() -> Self {
        Self::new()
    }
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self {
            size: 0,
            hashes: Vec::new(),
        }
    }

    /// The nodes to read to rebuild the frontier of a tree of `size` leaves
    /// (`range_nodes(0, size)`), in the order [`Frontier::from_hashes`] takes them.
    pub fn node_ids(size: u64) -> Vec<NodeId> {
        range_nodes(0, size)
    }

    /// Rebuilds a frontier from the hashes of [`Frontier::node_ids`]`(size)`.
    pub fn from_hashes(size: u64, hashes: Vec<Hash>) -> Result<Self, VerifyError> {
        let want = size.count_ones() as usize;
        if hashes.len() != want {
            return Err(VerifyError::WrongFrontierSize {
                got: hashes.len(),
                want,
            });
        }
        Ok(Self { size, hashes })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The border hashes, biggest subtree first.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends one leaf hash; returns every node that became complete, the leaf itself
    /// (level 0) first, then its completed ancestors bottom-up. Storing exactly these keeps
    /// storage able to serve every proof.
    ///
    /// # Panics
    ///
    /// If the tree already has `u64::MAX` leaves.
    pub fn append(&mut self, leaf: Hash) -> Vec<(NodeId, Hash)> {
        let mut completed =
            Vec::with_capacity(1 + self.size.wrapping_add(1).trailing_zeros() as usize);
        self.push(leaf, |id, hash| completed.push((id, hash)));
        completed
    }

    /// The root hash: the border folded from the right; [`empty_root`] for size 0.
    pub fn root(&self) -> Hash {
        fold_right(&self.hashes).unwrap_or_else(empty_root)
    }

    /// [`Frontier::append`] without collecting the completed nodes.
    fn push(&mut self, leaf: Hash, mut on_complete: impl FnMut(NodeId, Hash)) {
        let index = self.size;
        let new_size = index.checked_add(1).expect("merkle tree is full");
        on_complete(NodeId::new(0, index), leaf);
        // Each trailing zero of the new size is a level at which the new leaf completed a
        // subtree, merging with the border's smallest subtree.
        let mut hash = leaf;
        for level in 1..=new_size.trailing_zeros() {
            let left = self
                .hashes
                .pop()
                .expect("frontier has a hash per set bit of size");
            hash = node_hash(&left, &hash);
            on_complete(NodeId::new(level as u8, index >> level), hash);
        }
        self.hashes.push(hash);
        self.size = new_size;
    }
}

/// Number of hashes in an inclusion proof (transparency-dev/merkle `decompInclProof`): the
/// levels below the point where the paths to `index` and `size - 1` diverge, plus one left
/// sibling per set bit above it. Requires `index < size`.
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let inner = u64::BITS - (index ^ (size - 1)).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// Number of hashes in a consistency proof: the inclusion proof of the old tree's last leaf,
/// minus the levels inside the old tree's smallest complete subtree, plus that subtree's hash
/// unless it is the whole old tree. Requires `0 < old_size < new_size`.
fn consistency_proof_len(old_size: u64, new_size: u64) -> usize {
    let inner = u64::BITS - ((old_size - 1) ^ (new_size - 1)).leading_zeros();
    let border = (old_size - 1).checked_shr(inner).unwrap_or(0).count_ones();
    let shift = old_size.trailing_zeros();
    let seed = usize::from(!old_size.is_power_of_two());
    seed + (inner - shift + border) as usize
}

/// The largest power of two strictly less than `n` (`n >= 2`): where the RFC splits a tree.
fn split_point(n: u64) -> u64 {
    1 << (n - 1).ilog2()
}

fn is_odd(x: u64) -> bool {
    x & 1 == 1
}

/// `node_hash(h0, node_hash(h1, … node_hash(h[n-2], h[n-1])))`: the RFC hash of a range from
/// the hashes of its decomposition. `None` for no hashes.
fn fold_right(hashes: &[Hash]) -> Option<Hash> {
    let (last, rest) = hashes.split_last()?;
    Some(rest.iter().rev().fold(*last, |acc, h| node_hash(h, &acc)))
}

/// What a proof needs: every node id to read, and for each proof element the slice of those
/// ids whose hashes fold (from the right) into it.
#[derive(Default)]
struct Plan {
    ids: Vec<NodeId>,
    elems: Vec<std::ops::Range<usize>>,
}

impl Plan {
    /// Adds one element: `MTH(D[start:end])`.
    fn push_range(&mut self, start: u64, end: u64) {
        let first = self.ids.len();
        self.ids.extend(range_nodes(start, end));
        self.elems.push(first..self.ids.len());
    }

    /// One read for all ids, then one fold per element.
    fn execute<R: HashReader>(self, reader: &R) -> Result<Vec<Hash>, ProofError<R::Error>> {
        if self.ids.is_empty() {
            return Ok(Vec::new());
        }
        let hashes = reader.read_hashes(&self.ids).map_err(ProofError::Read)?;
        if hashes.len() != self.ids.len() {
            return Err(ProofError::ReaderReturnedWrongCount {
                got: hashes.len(),
                want: self.ids.len(),
            });
        }
        Ok(self
            .elems
            .into_iter()
            .map(|r| fold_right(&hashes[r]).expect("every proof element covers a leaf"))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;
    use std::collections::HashMap;

    /// Every complete node of a tree, stored as the sequencer would.
    struct Memory(HashMap<NodeId, Hash>);

    impl HashReader for Memory {
        type Error = NodeId;
        fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, NodeId> {
            ids.iter()
                .map(|id| self.0.get(id).copied().ok_or(*id))
                .collect()
        }
    }

    fn tree(n: u64) -> (Frontier, Memory, Vec<Hash>) {
        let mut f = Frontier::new();
        let mut m = HashMap::new();
        let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for l in &leaves {
            m.extend(f.append(*l));
        }
        (f, Memory(m), leaves)
    }

    /// RFC 9162 §2.1.1 MTH, written as the recursion.
    fn mth(d: &[Hash]) -> Hash {
        match d.len() {
            0 => empty_root(),
            1 => d[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&mth(&d[..k]), &mth(&d[k..]))
            }
        }
    }

    #[test]
    fn range_nodes_decomposes_into_maximal_subtrees() {
        let ids = |v: &[(u8, u64)]| {
            v.iter()
                .map(|&(l, i)| NodeId::new(l, i))
                .collect::<Vec<_>>()
        };
        assert_eq!(range_nodes(0, 0), vec![]);
        assert_eq!(range_nodes(5, 5), vec![]);
        assert_eq!(range_nodes(7, 3), vec![]);
        assert_eq!(range_nodes(0, 7), ids(&[(2, 0), (1, 2), (0, 6)]));
        assert_eq!(range_nodes(3, 13), ids(&[(0, 3), (2, 1), (2, 2), (0, 12)]));
        assert_eq!(range_nodes(0, 8), ids(&[(3, 0)]));
        assert_eq!(range_nodes(0, u64::MAX).len(), 64, "one node per set bit");
        assert_eq!(range_nodes(1, u64::MAX).len(), 126);
    }

    #[test]
    fn range_hash_matches_rfc_recursion() {
        let (_, mem, leaves) = tree(40);
        for lo in 0..40u64 {
            for hi in lo + 1..=40 {
                // Only ranges the RFC recursion visits: lo aligned to a power of two >= len.
                let len = hi - lo;
                if lo % len.next_power_of_two() != 0 {
                    continue;
                }
                let mut plan = Plan::default();
                plan.push_range(lo, hi);
                let got = plan.execute(&mem).unwrap()[0];
                assert_eq!(got, mth(&leaves[lo as usize..hi as usize]), "[{lo},{hi})");
            }
        }
    }

    #[test]
    fn roots_agree() {
        for n in 0..70 {
            let (f, mem, leaves) = tree(n);
            let want = mth(&leaves);
            assert_eq!(f.root(), want);
            assert_eq!(root_of_leaf_hashes(&leaves), want);
            assert_eq!(root_hash(&mem, n).unwrap(), want);
            assert_eq!(f.hashes().len(), n.count_ones() as usize);
            let ids = Frontier::node_ids(n);
            let rebuilt = Frontier::from_hashes(n, mem.read_hashes(&ids).unwrap()).unwrap();
            assert_eq!(rebuilt, f);
        }
    }

    #[test]
    fn append_reports_completed_nodes_bottom_up() {
        let (mut f, _, _) = tree(7);
        let done = f.append([9; 32]);
        let ids: Vec<NodeId> = done.iter().map(|(id, _)| *id).collect();
        assert_eq!(
            ids,
            vec![
                NodeId::new(0, 7),
                NodeId::new(1, 3),
                NodeId::new(2, 1),
                NodeId::new(3, 0)
            ]
        );
        assert_eq!(done[0].1, [9; 32]);
        assert_eq!(done[3].1, f.root());
    }

    #[test]
    fn proof_lengths_match_builders() {
        for n in 1..40u64 {
            let (_, mem, _) = tree(n);
            for i in 0..n {
                let p = inclusion_proof(&mem, i, n).unwrap();
                assert_eq!(p.len(), inclusion_proof_len(i, n), "incl {i} {n}");
            }
            for m in 1..n {
                let p = consistency_proof(&mem, m, n).unwrap();
                assert_eq!(p.len(), consistency_proof_len(m, n), "cons {m} {n}");
            }
        }
    }

    #[test]
    fn builders_refuse_bad_ranges() {
        let (_, mem, _) = tree(4);
        assert_eq!(
            inclusion_proof(&mem, 4, 4),
            Err(ProofError::IndexOutOfRange { index: 4, size: 4 })
        );
        assert_eq!(
            consistency_proof(&mem, 0, 4),
            Err(ProofError::InvalidRange {
                old_size: 0,
                new_size: 4
            })
        );
        assert_eq!(
            consistency_proof(&mem, 5, 4),
            Err(ProofError::InvalidRange {
                old_size: 5,
                new_size: 4
            })
        );
        assert_eq!(consistency_proof(&mem, 4, 4), Ok(vec![]));
        assert_eq!(
            inclusion_proof(&mem, 1, 5),
            Err(ProofError::Read(NodeId::new(0, 4)))
        );
    }

    #[test]
    fn wrong_reader_count_is_reported() {
        struct Short;
        impl HashReader for Short {
            type Error = std::convert::Infallible;
            fn read_hashes(&self, _: &[NodeId]) -> Result<Vec<Hash>, Self::Error> {
                Ok(vec![])
            }
        }
        assert_eq!(
            root_hash(&Short, 3),
            Err(ProofError::ReaderReturnedWrongCount { got: 0, want: 2 })
        );
    }

    #[test]
    fn frontier_from_hashes_checks_count() {
        assert_eq!(
            Frontier::from_hashes(5, vec![[0; 32]]),
            Err(VerifyError::WrongFrontierSize { got: 1, want: 2 })
        );
        assert_eq!(Frontier::from_hashes(0, vec![]), Ok(Frontier::new()));
    }
}
