//! The trusted-state step on real trees: every accepted advance and every violation.

use kt_core::checkpoint::{Checkpoint, SignedCheckpoint};
use kt_core::hash::{empty_root, leaf_hash, node_hash, Hash};
use kt_core::note::{sign_note, KeyName, NoteSigner};
use kt_core::trust::{
    advance, check_link, verify_chain, BadChain, ChainRefusal, Step, TrustedState, Violation,
};
use proptest::prelude::*;

const ORIGIN: &str = "keytrail.example/log";

// --- RFC 9162 §2.1 reference, over leaf hashes -------------------------------------------

/// Largest power of two smaller than `n` (n >= 2).
fn split(n: usize) -> usize {
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// RFC 9162 §2.1.4.1 SUBPROOF(m, D[n], b).
fn subproof(m: usize, leaves: &[Hash], complete: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if complete { vec![] } else { vec![mth(leaves)] };
    }
    let k = split(n);
    if m <= k {
        let mut p = subproof(m, &leaves[..k], complete);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = subproof(m - k, &leaves[k..], false);
        p.push(mth(&leaves[..k]));
        p
    }
}

/// PROOF(m, D[n]); empty when there is nothing to prove (m == 0 or m == n).
fn consistency(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    if m == 0 || m == leaves.len() {
        vec![]
    } else {
        subproof(m, leaves, true)
    }
}

fn leaves(n: usize, tag: &str) -> Vec<Hash> {
    (0..n)
        .map(|i| leaf_hash(format!("{tag} entry {i}").as_bytes()))
        .collect()
}

// --- a log that signs checkpoints ---------------------------------------------------------

struct Log {
    key: NoteSigner,
    leaves: Vec<Hash>,
    chain: Vec<SignedCheckpoint>,
}

impl Log {
    fn new(origin: &str, seed: u8) -> Self {
        let key = NoteSigner::from_seed(KeyName::new(origin).unwrap(), [seed; 32]);
        let genesis = Checkpoint::genesis(origin, 1_000);
        let mut log = Log {
            key,
            leaves: leaves(64, origin),
            chain: vec![],
        };
        let signed = log.sign(genesis);
        log.chain.push(signed);
        log
    }

    /// Signs and re-opens, as a client would receive it.
    fn sign(&self, cp: Checkpoint) -> SignedCheckpoint {
        let signed = SignedCheckpoint::sign(cp, &self.key).unwrap();
        let origin = signed.checkpoint().origin.clone();
        SignedCheckpoint::open(signed.note().as_bytes(), &origin, &self.key.verifier()).unwrap()
    }

    /// The honest next checkpoint at `size`.
    fn next(&self, size: usize) -> Checkpoint {
        let last = self.chain.last().unwrap().checkpoint();
        Checkpoint {
            size: size as u64,
            root: mth(&self.leaves[..size]),
            epoch: last.epoch + 1,
            map_root: [last.epoch as u8 + 1; 32],
            prev: last.body_hash(),
            time_ms: last.time_ms + 500,
            ..last.clone()
        }
    }

    fn grow(&mut self, size: usize) -> SignedCheckpoint {
        let signed = self.sign(self.next(size));
        self.chain.push(signed.clone());
        signed
    }

    fn at(&self, epoch: usize) -> &SignedCheckpoint {
        &self.chain[epoch]
    }

    fn proof(&self, from: &SignedCheckpoint, to: &SignedCheckpoint) -> Vec<Hash> {
        let (m, n) = (from.checkpoint().size, to.checkpoint().size);
        consistency(m as usize, &self.leaves[..n as usize])
    }
}

/// Epochs 0..=5 at sizes 0, 3, 3, 7, 8, 13.
fn honest_log() -> Log {
    let mut log = Log::new(ORIGIN, 1);
    for size in [3, 3, 7, 8, 13] {
        log.grow(size);
    }
    log
}

fn assert_evidence(v: &Violation, kind: &str, trusted: &SignedCheckpoint, new: &SignedCheckpoint) {
    let e = v.evidence();
    assert_eq!(e.kind, kind, "{v}");
    assert_eq!(e.trusted_note, trusted.note());
    assert_eq!(e.new_note, new.note());
    assert!(!e.detail.is_empty());
    // The evidence is a self-contained file.
    let json = serde_json::to_string(e).unwrap();
    let back: kt_core::trust::Evidence = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, e);
}

// --- tests ----------------------------------------------------------------------------------

#[test]
fn reference_proofs_match_rfc_shapes() {
    let l = leaves(7, "t");
    // RFC 9162 §2.1.5 example: PROOF(3, D[7]) = [c, d, g, l]; PROOF(4, D[7]) = [l]; PROOF(6, D[7]) = [i, j, k].
    assert_eq!(consistency(3, &l).len(), 4);
    assert_eq!(consistency(4, &l), vec![mth(&l[4..])]);
    assert_eq!(consistency(6, &l).len(), 3);
    // The crate's verifier accepts them: the two implementations agree.
    for m in 1..=7 {
        for n in m..=7 {
            let p = consistency(m, &l[..n]);
            kt_core::merkle::verify_consistency(
                m as u64,
                n as u64,
                &p,
                &mth(&l[..m]),
                &mth(&l[..n]),
            )
            .unwrap();
        }
    }
}

#[test]
fn accepts_every_honest_advance() {
    let log = honest_log();
    // Consecutive epochs, skipped epochs, empty epochs (same size), and from genesis.
    for i in 0..log.chain.len() {
        for j in i..log.chain.len() {
            let (t, n) = (log.at(i), log.at(j));
            let step = advance(t, n, &log.proof(t, n)).unwrap();
            if i == j {
                assert_eq!(step, Step::Same);
            } else {
                assert_eq!(step, Step::Advanced(n.clone()));
            }
        }
    }
}

#[test]
fn trusted_state_walks_the_chain_and_survives_violations() {
    let log = honest_log();
    let mut state = TrustedState::new(log.at(0).clone());
    for next in &log.chain[1..] {
        let proof = log.proof(state.latest(), next);
        state.update(next, &proof).unwrap();
        assert_eq!(state.latest(), next);
    }
    // A rollback is refused and leaves the state alone.
    let before = state.clone();
    assert!(matches!(
        state.update(log.at(2), &[]),
        Err(Violation::Rollback(_))
    ));
    assert_eq!(state, before);

    let json = serde_json::to_string(&state).unwrap();
    assert_eq!(serde_json::from_str::<TrustedState>(&json).unwrap(), state);
}

#[test]
fn same_body_with_other_cosignatures_is_same() {
    let log = honest_log();
    let witness = NoteSigner::from_seed(KeyName::new("witness.example").unwrap(), [7; 32]);
    let t = log.at(3);
    let cosigned = sign_note(&t.checkpoint().body(), &[&log.key, &witness]).unwrap();
    let cosigned =
        SignedCheckpoint::open(cosigned.as_bytes(), ORIGIN, &log.key.verifier()).unwrap();
    assert_ne!(cosigned.note(), t.note());
    assert_eq!(advance(t, &cosigned, &[]), Ok(Step::Same));
    // But a proof where none is needed is refused.
    let v = advance(t, &cosigned, &[[0; 32]]).unwrap_err();
    assert!(matches!(v, Violation::Fork(_)));
}

#[test]
fn rollback_to_a_lower_epoch() {
    let log = honest_log();
    let (t, n) = (log.at(4), log.at(2));
    let v = advance(t, n, &[]).unwrap_err();
    assert!(matches!(v, Violation::Rollback(_)));
    assert_evidence(&v, "rollback", t, n);
}

#[test]
fn rollback_to_a_smaller_tree_at_a_higher_epoch() {
    let log = honest_log();
    let t = log.at(5);
    let n = log.sign(log.next(8)); // epoch 6 over 8 leaves, after 13
    let v = advance(t, &n, &[]).unwrap_err();
    assert!(matches!(v, Violation::Rollback(_)));
    assert_evidence(&v, "rollback", t, &n);
}

#[test]
fn fork_two_bodies_for_one_epoch() {
    let log = honest_log();
    let t = log.at(3);
    let mut other = t.checkpoint().clone();
    other.time_ms += 1;
    let n = log.sign(other);
    let v = advance(t, &n, &[]).unwrap_err();
    assert!(matches!(v, Violation::Fork(_)));
    assert_evidence(&v, "fork", t, &n);
    assert!(v.evidence().detail.contains("epoch 3"));
}

#[test]
fn fork_inconsistent_trees() {
    let mut log = honest_log();
    let t = log.at(3).clone(); // size 7
                               // The log signs epoch 6 over a rewritten history of 20 leaves.
    log.leaves = leaves(64, "rewritten");
    let n = log.sign(log.next(20));
    // The best proof the log can give (for its new history) does not link the old root.
    let proof = consistency(7, &log.leaves[..20]);
    let v = advance(&t, &n, &proof).unwrap_err();
    assert!(matches!(v, Violation::Fork(_)));
    assert_evidence(&v, "fork", &t, &n);
    assert_eq!(v.evidence().consistency_proof.len(), proof.len());
}

#[test]
fn fork_same_size_different_root() {
    let log = honest_log();
    let t = log.at(2); // size 3
    let mut cp = log.next(3);
    cp.epoch = 3;
    cp.prev = t.checkpoint().body_hash();
    cp.root = mth(&leaves(3, "other"));
    let n = log.sign(cp);
    let v = advance(t, &n, &[]).unwrap_err();
    assert!(matches!(v, Violation::Fork(_)));
    assert_evidence(&v, "fork", t, &n);
}

#[test]
fn broken_chain_wrong_prev() {
    let log = honest_log();
    let t = log.at(5);
    let mut cp = log.next(20);
    cp.prev = log.at(4).checkpoint().body_hash();
    let n = log.sign(cp);
    let v = advance(t, &n, &log.proof(t, &n)).unwrap_err();
    assert!(matches!(v, Violation::BrokenChain(_)));
    assert_evidence(&v, "broken-chain", t, &n);
    // Across a gap the link cannot be checked: accepted.
    let t = log.at(4);
    assert!(advance(t, &n, &log.proof(t, &n)).is_ok());
}

#[test]
fn time_going_backwards() {
    let log = honest_log();
    let t = log.at(5);
    let mut cp = log.next(20);
    cp.time_ms = t.checkpoint().time_ms - 1;
    let n = log.sign(cp);
    let v = advance(t, &n, &log.proof(t, &n)).unwrap_err();
    assert!(matches!(v, Violation::TimeWentBackwards(_)));
    assert_evidence(&v, "time-went-backwards", t, &n);
    // Equal time is fine.
    let mut cp = log.next(20);
    cp.time_ms = t.checkpoint().time_ms;
    let n = log.sign(cp);
    assert!(advance(t, &n, &log.proof(t, &n)).is_ok());
}

#[test]
fn wrong_origin() {
    let log = honest_log();
    let mut other = Log::new("other.example/log", 2);
    for size in [3, 3, 7, 8, 13, 20] {
        other.grow(size);
    }
    let (t, n) = (log.at(5), other.at(6));
    let v = advance(t, n, &[]).unwrap_err();
    assert!(matches!(v, Violation::WrongOrigin(_)));
    assert_evidence(&v, "wrong-origin", t, n);
    let v = check_link(t, n).unwrap_err();
    assert!(matches!(v, Violation::WrongOrigin(_)));
}

#[test]
fn bad_proofs_from_genesis_and_equal_sizes() {
    let log = honest_log();
    // From the empty tree the proof must be empty.
    let (g, n) = (log.at(0), log.at(3));
    assert!(matches!(advance(g, n, &[[1; 32]]), Err(Violation::Fork(_))));
    // Equal sizes at different epochs: empty proof only.
    let (a, b) = (log.at(1), log.at(2));
    assert!(advance(a, b, &[]).is_ok());
    assert!(matches!(
        advance(a, b, &[a.checkpoint().root]),
        Err(Violation::Fork(_))
    ));
}

#[test]
fn check_link_walks_an_honest_chain() {
    let log = honest_log();
    for pair in log.chain.windows(2) {
        check_link(&pair[0], &pair[1]).unwrap();
    }
    check_link(log.at(3), log.at(3)).unwrap();
}

#[test]
fn check_link_violations() {
    let log = honest_log();
    let kind = |prev: &SignedCheckpoint, next: &SignedCheckpoint| {
        let v = check_link(prev, next).unwrap_err();
        assert_evidence(&v, &v.evidence().kind.clone(), prev, next);
        v.evidence().kind.clone()
    };
    // Skipped epoch, backwards epoch.
    assert_eq!(kind(log.at(1), log.at(3)), "broken-chain");
    assert_eq!(kind(log.at(3), log.at(2)), "rollback");
    // Equivocation.
    let mut cp = log.at(3).checkpoint().clone();
    cp.map_root = [0xff; 32];
    assert_eq!(kind(log.at(3), &log.sign(cp)), "fork");
    // Wrong prev, smaller tree, earlier time.
    let mut cp = log.next(20);
    cp.prev = [0; 32];
    assert_eq!(kind(log.at(5), &log.sign(cp)), "broken-chain");
    let cp = log.next(12);
    assert_eq!(kind(log.at(5), &log.sign(cp)), "rollback");
    let mut cp = log.next(20);
    cp.time_ms = 0;
    assert_eq!(kind(log.at(5), &log.sign(cp)), "time-went-backwards");
}

#[test]
fn violation_display_is_short_and_lowercase() {
    let log = honest_log();
    let v = advance(log.at(4), log.at(2), &[]).unwrap_err();
    let msg = v.to_string();
    assert!(msg.starts_with("rollback: "), "{msg}");
    assert!(!msg.contains('\n'));
}

// --- chains across gaps (verify_chain) ------------------------------------------------------

/// The bodies of epochs `from..to`, as a server serves them.
fn bodies(log: &Log, from: usize, to: usize) -> Vec<String> {
    (from..to).map(|e| log.at(e).checkpoint().body()).collect()
}

fn violation_of(r: Result<(), ChainRefusal>) -> Violation {
    match r {
        Err(ChainRefusal::Violation(v)) => v,
        other => panic!("expected a violation, got {other:?}"),
    }
}

#[test]
fn honest_chains_verify_both_ways() {
    let log = honest_log();
    for i in 0..log.chain.len() {
        for j in i..log.chain.len() {
            let (older, newer) = (log.at(i), log.at(j));
            let chain = bodies(&log, i, j);
            // A forward jump (the older is trusted) and a past checkpoint (the newer is).
            assert_eq!(verify_chain(older, newer, &chain), Ok(()));
            assert_eq!(verify_chain(newer, older, &chain), Ok(()));
        }
    }
}

/// The attack: trusted epoch 4; a second signed body for epoch 2, same size, root, prev
/// and time, epoch 1's map root. `advance` (the consistency proof) passes; the chain does not.
#[test]
fn second_body_for_a_past_epoch_is_a_fork_against_the_chain() {
    let log = honest_log();
    let trusted = log.at(4);
    let mut body = log.at(2).checkpoint().clone();
    body.map_root = log.at(1).checkpoint().map_root;
    let forged = log.sign(body);
    assert!(advance(&forged, trusted, &log.proof(&forged, trusted)).is_ok());

    let chain = bodies(&log, 2, 4);
    let v = violation_of(verify_chain(trusted, &forged, &chain));
    assert!(matches!(v, Violation::Fork(_)), "{v}");
    assert_evidence(&v, "fork", trusted, &forged);
    assert_eq!(v.evidence().chain, chain);
    assert!(v.evidence().detail.contains("epoch 2"), "{v}");
    // The evidence file keeps the chain.
    let json = serde_json::to_value(v.evidence()).unwrap();
    assert_eq!(json["chain"].as_array().unwrap().len(), 2);
}

#[test]
fn forward_jump_to_a_chain_that_forks_below_it() {
    let log = honest_log();
    // The log rewrites epoch 1 (another map root) and re-links 2..5 on top of it.
    let mut forged = Log {
        key: NoteSigner::from_seed(KeyName::new(ORIGIN).unwrap(), [1; 32]),
        leaves: log.leaves.clone(),
        chain: vec![log.at(0).clone()],
    };
    let mut one = log.at(1).checkpoint().clone();
    one.map_root = [0xee; 32];
    let one = forged.sign(one);
    forged.chain.push(one);
    for size in [3, 3, 7, 8] {
        forged.grow(size);
    }
    let (trusted, new) = (log.at(1), forged.at(5));
    assert!(advance(trusted, new, &log.proof(trusted, new)).is_ok());
    let chain = bodies(&forged, 1, 5);
    let v = violation_of(verify_chain(trusted, new, &chain));
    assert!(matches!(v, Violation::Fork(_)), "{v}");
    assert_evidence(&v, "fork", trusted, new);
}

#[test]
fn bodies_not_named_by_the_newer_checkpoint_are_the_answers_fault() {
    let log = honest_log();
    let (trusted, new) = (log.at(1), log.at(5));
    // A middle body replaced (here by a re-linked forgery): it is not the one epoch 4 names.
    let mut chain = bodies(&log, 1, 5);
    let mut three = log.at(3).checkpoint().clone();
    three.prev = [0; 32];
    chain[2] = three.body();
    assert_eq!(
        verify_chain(trusted, new, &chain),
        Err(ChainRefusal::BadChain(BadChain::NotNamed { epoch: 3 }))
    );
    // Wrong count; garbage.
    let short = bodies(&log, 2, 5);
    assert!(matches!(
        verify_chain(trusted, new, &short),
        Err(ChainRefusal::BadChain(BadChain::Length {
            want: 4,
            got: 3,
            ..
        }))
    ));
    let mut garbage = bodies(&log, 1, 5);
    garbage[3] = "not a checkpoint\n".into();
    assert_eq!(
        verify_chain(trusted, new, &garbage),
        Err(ChainRefusal::BadChain(BadChain::NotNamed { epoch: 4 }))
    );
}

/// A log that signs a chain whose links hold but whose rules do not: the newer checkpoint vouches
/// for every body, so a smaller tree or an earlier time inside it is the log's violation.
#[test]
fn rules_broken_inside_an_authenticated_chain_are_violations() {
    for (kind, edit) in [
        (
            "rollback",
            (|cp: &mut Checkpoint| cp.size = 2) as fn(&mut Checkpoint),
        ),
        ("time-went-backwards", |cp: &mut Checkpoint| cp.time_ms = 0),
    ] {
        let log = honest_log();
        let mut bad = Log {
            key: NoteSigner::from_seed(KeyName::new(ORIGIN).unwrap(), [1; 32]),
            leaves: log.leaves.clone(),
            chain: log.chain[..3].to_vec(),
        };
        let mut three = bad.next(7);
        edit(&mut three);
        let three = bad.sign(three);
        bad.chain.push(three);
        bad.grow(8);
        bad.grow(13);
        let (trusted, new) = (log.at(1), bad.at(5));
        let v = violation_of(verify_chain(trusted, new, &bodies(&bad, 1, 5)));
        assert_eq!(v.evidence().kind, kind, "{v}");
        assert!(v.evidence().detail.contains("epoch"), "{v}");
        assert_eq!(v.evidence().chain.len(), 4);
    }
}

#[test]
fn a_chain_between_two_logs_is_wrong_origin() {
    let log = honest_log();
    let mut other = Log::new("other.example/log", 2);
    for size in [3, 3, 7, 8, 13] {
        other.grow(size);
    }
    let v = violation_of(verify_chain(log.at(1), other.at(5), &bodies(&other, 1, 5)));
    assert!(matches!(v, Violation::WrongOrigin(_)), "{v}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every honest proof is accepted; every one-bit change, dropped or extra hash is a fork.
    #[test]
    fn corrupted_proofs_are_forks(m in 1usize..40, extra in 1usize..24, bit in 0usize..256, which in any::<prop::sample::Index>()) {
        let mut log = Log::new(ORIGIN, 1);
        log.grow(m);
        let t = log.chain.last().unwrap().clone();
        let n = log.grow(m + extra);
        let proof = log.proof(&t, &n);
        prop_assert_eq!(advance(&t, &n, &proof), Ok(Step::Advanced(n.clone())));

        let i = which.index(proof.len());
        let mut flipped = proof.clone();
        flipped[i][bit / 8] ^= 1 << (bit % 8);
        prop_assert!(matches!(advance(&t, &n, &flipped), Err(Violation::Fork(_))));

        let mut dropped = proof.clone();
        dropped.remove(i);
        prop_assert!(matches!(advance(&t, &n, &dropped), Err(Violation::Fork(_))));

        let mut longer = proof.clone();
        longer.push(proof[i]);
        prop_assert!(matches!(advance(&t, &n, &longer), Err(Violation::Fork(_))));
    }
}

// --- issue 18, finding 3: checkpoints dated in the future -----------------------------------

#[test]
fn a_checkpoint_dated_beyond_the_bound_is_from_the_future() {
    use kt_core::trust::{check_not_ahead, FromTheFuture, DEFAULT_MAX_AHEAD_MS};
    let log = honest_log();
    let cp = log.at(5).checkpoint(); // time 3_500
    let time = cp.time_ms;
    // At or within the bound (including any time in the past): fine.
    for now in [time - 100, time, time + 1, u64::MAX] {
        check_not_ahead(cp, now, 100).unwrap();
    }
    // One millisecond more: refused, with the numbers.
    let err = check_not_ahead(cp, time - 101, 100).unwrap_err();
    assert_eq!(
        err,
        FromTheFuture {
            epoch: 5,
            time_ms: time,
            now_ms: time - 101,
            ahead_ms: 101,
            max_ms: 100,
        }
    );
    assert!(err.to_string().contains("101 ms ahead"), "{err}");
    // A year ahead, against the default bound.
    let mut year = cp.clone();
    year.time_ms = time + 365 * 24 * 3_600_000;
    assert!(check_not_ahead(&year, time, DEFAULT_MAX_AHEAD_MS).is_err());
    assert_eq!(DEFAULT_MAX_AHEAD_MS, 300_000);
    // An old log audited today is never in the future.
    check_not_ahead(cp, u64::MAX, 0).unwrap();
}

// --- issue 18, finding 4: gossip decided from the two notes ---------------------------------

#[test]
fn proof_needed_asks_for_a_proof_only_between_growing_trees() {
    use kt_core::trust::proof_needed;
    let log = honest_log(); // sizes 0, 3, 3, 7, 8, 13
    for i in 0..log.chain.len() {
        for j in i..log.chain.len() {
            let (o, n) = (log.at(i), log.at(j));
            let (m, s) = (o.checkpoint().size, n.checkpoint().size);
            let want = (m > 0 && m < s).then_some((m, s));
            assert_eq!(proof_needed(o, n).unwrap(), want, "epochs {i} -> {j}");
            if want.is_some() {
                assert!(advance(o, n, &log.proof(o, n)).is_ok());
            }
        }
    }
}

#[test]
fn proof_needed_finds_what_the_notes_alone_prove() {
    use kt_core::trust::proof_needed;
    let log = honest_log();
    // A larger tree at the older epoch (the witness's epoch 4 has 20 leaves, ours epoch 5 has
    // 13): a rollback, whichever side each note came from.
    let mut big = log.at(4).checkpoint().clone();
    big.size = 20;
    big.root = mth(&log.leaves[..20]);
    let big = log.sign(big);
    let v = proof_needed(&big, log.at(5)).unwrap_err();
    assert!(matches!(v, Violation::Rollback(_)), "{v}");
    assert_evidence(&v, "rollback", &big, log.at(5));
    // The reverse: a newer epoch with a smaller tree.
    let v = proof_needed(log.at(5), &log.sign(log.next(8))).unwrap_err();
    assert!(matches!(v, Violation::Rollback(_)), "{v}");
    // One epoch, two bodies.
    let mut other = log.at(3).checkpoint().clone();
    other.map_root = [9; 32];
    let other = log.sign(other);
    let v = proof_needed(log.at(3), &other).unwrap_err();
    assert_evidence(&v, "fork", log.at(3), &other);
    // The same size with another root.
    let mut cp = log.next(13);
    cp.root = mth(&leaves(13, "other"));
    let v = proof_needed(log.at(5), &log.sign(cp)).unwrap_err();
    assert!(matches!(v, Violation::Fork(_)), "{v}");
    // Growing trees, but a broken link or a time going back: no proof needed to refuse.
    let mut cp = log.next(20);
    cp.prev = [7; 32];
    let v = proof_needed(log.at(5), &log.sign(cp)).unwrap_err();
    assert!(matches!(v, Violation::BrokenChain(_)), "{v}");
    let mut cp = log.next(20);
    cp.epoch += 3;
    cp.time_ms = 1;
    let v = proof_needed(log.at(5), &log.sign(cp)).unwrap_err();
    assert!(matches!(v, Violation::TimeWentBackwards(_)), "{v}");
}
