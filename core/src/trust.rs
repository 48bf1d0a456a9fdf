//! The trusted-state step of clients and auditors.
//!
//! A verifier keeps the last checkpoint it accepted and replaces it only after checking that the
//! new one extends it: same log, no rollback, an append-only tree (consistency proof), a clock
//! that does not go backwards and, for consecutive epochs, an intact `prev` link. Across a gap of
//! epochs (a jump forward, or a checkpoint of an older epoch) [`verify_chain`] checks the bodies
//! of the epochs in between: the newer checkpoint's `prev` links name them one by one, down to
//! the older checkpoint. Every refusal is a [`Violation`] carrying [`Evidence`] that anyone can
//! re-check with the log's public key.
//!
//! What the evidence proves: two signed checkpoints of one epoch with different bodies, a signed
//! rollback, a broken link or a clock going backwards are conclusive on their own. A [`Fork`]
//! found only because the consistency proof failed is conclusive only once nobody can produce a
//! valid proof between the two checkpoints (the proof may simply be wrong); an auditor settles it
//! by recomputing the roots from the entries.
//!
//! [`Fork`]: Violation::Fork

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{ChainError, Checkpoint, CheckpointError, SignedCheckpoint};
use crate::hash::{sha256, Hash};
use crate::merkle::verify_consistency;

/// Everything needed to show a violation to a third party: both signed notes and the proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// Stable kind: `wrong-origin`, `fork`, `rollback`, `broken-chain`, `time-went-backwards`.
    pub kind: String,
    /// What was found, for humans.
    pub detail: String,
    /// The signed checkpoint that was trusted (or came first in the chain).
    pub trusted_note: String,
    /// The signed checkpoint that was refused.
    pub new_note: String,
    /// The consistency proof that came with the new checkpoint, base64 hashes.
    pub consistency_proof: Vec<String>,
    /// For a violation found by [`verify_chain`]: the checkpoint bodies of the epochs from the
    /// older note's epoch up to the one before the newer note's, oldest first, exactly as the
    /// newer note's `prev` links name them (the newer note names the last one, each body names
    /// the one before it). The first is the body the newer note commits to for the older note's
    /// epoch. Absent (empty) otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

/// A new checkpoint that must not be accepted, with the evidence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// The checkpoints are from different logs.
    #[error("wrong origin: {0}")]
    WrongOrigin(Box<Evidence>),
    /// Two different checkpoints for one epoch, or trees that are not consistent.
    #[error("fork: {0}")]
    Fork(Box<Evidence>),
    /// A lower epoch, or a higher epoch with a smaller tree.
    #[error("rollback: {0}")]
    Rollback(Box<Evidence>),
    /// The next epoch does not name the previous checkpoint, or an epoch was skipped in a chain.
    #[error("broken chain: {0}")]
    BrokenChain(Box<Evidence>),
    /// A later epoch with an earlier time.
    #[error("time went backwards: {0}")]
    TimeWentBackwards(Box<Evidence>),
}

impl Violation {
    pub fn evidence(&self) -> &Evidence {
        match self {
            Self::WrongOrigin(e)
            | Self::Fork(e)
            | Self::Rollback(e)
            | Self::BrokenChain(e)
            | Self::TimeWentBackwards(e) => e,
        }
    }
}

/// A chain of checkpoint bodies that cannot be checked because of the answer, not the log: the
/// bodies served are not the ones the newer checkpoint's `prev` links name (whoever served them
/// lied or broke; an honest server never does). It proves nothing against the log: refuse it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadChain {
    #[error("the chain from epoch {from} to epoch {to} has {want} bodies, the answer {got}")]
    Length {
        from: u64,
        to: u64,
        want: u64,
        got: u64,
    },
    #[error("the body served for epoch {epoch} is not the one epoch {} names as its predecessor", .epoch + 1)]
    NotNamed { epoch: u64 },
}

/// Why [`verify_chain`] refused: a provable [`Violation`] of the log, or a [`BadChain`] answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainRefusal {
    #[error(transparent)]
    Violation(#[from] Violation),
    #[error("bad checkpoint chain: {0}")]
    BadChain(#[from] BadChain),
}

/// Result of a successful [`advance`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The new checkpoint has the same body as the trusted one.
    Same,
    /// The new checkpoint extends the trusted one and is now the one to trust.
    Advanced(SignedCheckpoint),
}

/// Builds violations that all carry the same two notes, proof and chain.
struct Witness<'a> {
    trusted: &'a SignedCheckpoint,
    new: &'a SignedCheckpoint,
    proof: &'a [Hash],
    chain: &'a [String],
}

impl Witness<'_> {
    fn evidence(&self, kind: &str, detail: String) -> Box<Evidence> {
        Box::new(Evidence {
            kind: kind.to_owned(),
            detail,
            trusted_note: self.trusted.note().to_owned(),
            new_note: self.new.note().to_owned(),
            consistency_proof: self.proof.iter().map(|h| BASE64.encode(h)).collect(),
            chain: self.chain.to_vec(),
        })
    }

    fn wrong_origin(&self) -> Violation {
        let (t, n) = (self.trusted.checkpoint(), self.new.checkpoint());
        Violation::WrongOrigin(self.evidence(
            "wrong-origin",
            format!("origin {:?} is not {:?}", n.origin, t.origin),
        ))
    }

    fn fork(&self, detail: String) -> Violation {
        Violation::Fork(self.evidence("fork", detail))
    }

    fn equivocation(&self) -> Violation {
        let epoch = self.new.checkpoint().epoch;
        self.fork(format!(
            "two different signed checkpoints for epoch {epoch}"
        ))
    }

    /// The violation of the link from epoch `epoch - 1` to `epoch` inside a chain, by
    /// [`Checkpoint::follows`].
    fn link(&self, epoch: u64, e: ChainError) -> Violation {
        let detail = format!("epoch {epoch} in the chain: {e}");
        match e {
            ChainError::OriginChanged { .. } => {
                Violation::WrongOrigin(self.evidence("wrong-origin", detail))
            }
            ChainError::EpochNotNext { prev, next } if next < prev => self.rollback(detail),
            ChainError::EpochNotNext { .. } | ChainError::PrevMismatch => self.broken_chain(detail),
            ChainError::SizeDecreased { .. } => self.rollback(detail),
            ChainError::TimeWentBackwards { .. } => {
                Violation::TimeWentBackwards(self.evidence("time-went-backwards", detail))
            }
        }
    }

    fn rollback(&self, detail: String) -> Violation {
        Violation::Rollback(self.evidence("rollback", detail))
    }

    fn broken_chain(&self, detail: String) -> Violation {
        Violation::BrokenChain(self.evidence("broken-chain", detail))
    }

    fn time_went_backwards(&self) -> Violation {
        let (t, n) = (self.trusted.checkpoint(), self.new.checkpoint());
        Violation::TimeWentBackwards(self.evidence(
            "time-went-backwards",
            format!(
                "epoch {} has time {} ms, before epoch {} at {} ms",
                n.epoch, n.time_ms, t.epoch, t.time_ms
            ),
        ))
    }
}

/// Decides whether `new` may replace `trusted`. Both must already be opened with
/// [`SignedCheckpoint::open`] (signatures checked); `consistency` is the RFC 9162 consistency
/// proof from `trusted.size` to `new.size`.
///
/// - different origin: [`Violation::WrongOrigin`];
/// - same epoch: same body is [`Step::Same`] (the proof is not needed and must be empty),
///   a different body is a [`Violation::Fork`];
/// - lower epoch, or higher epoch with a smaller tree: [`Violation::Rollback`];
/// - higher epoch: the proof must verify ([`Violation::Fork`]), the time must not go back
///   ([`Violation::TimeWentBackwards`]) and, for the very next epoch, `prev` must be the trusted
///   body's hash ([`Violation::BrokenChain`]).
///
/// Across a gap of more than one epoch the `prev` links in between are not checked here: the
/// caller checks them with [`verify_chain`] before it trusts `new` (or, for an older `new`,
/// anything under it).
pub fn advance(
    trusted: &SignedCheckpoint,
    new: &SignedCheckpoint,
    consistency: &[Hash],
) -> Result<Step, Violation> {
    let w = Witness {
        trusted,
        new,
        proof: consistency,
        chain: &[],
    };
    let (t, n) = (trusted.checkpoint(), new.checkpoint());
    if t.origin != n.origin {
        return Err(w.wrong_origin());
    }
    if n.epoch == t.epoch {
        if n != t {
            return Err(w.equivocation());
        }
        if !consistency.is_empty() {
            // Not misbehaviour of the log, but nothing to prove either: refuse the input.
            return Err(w.fork(format!(
                "non-empty consistency proof between identical checkpoints of epoch {}",
                n.epoch
            )));
        }
        return Ok(Step::Same);
    }
    if n.epoch < t.epoch {
        return Err(w.rollback(format!(
            "epoch {} is older than the trusted epoch {}",
            n.epoch, t.epoch
        )));
    }
    if n.size < t.size {
        return Err(w.rollback(format!(
            "epoch {} has {} entries, fewer than {} at epoch {}",
            n.epoch, n.size, t.size, t.epoch
        )));
    }
    // Every tree extends the empty one (whose root `parse_body` pins); RFC 9162 has no proof
    // for it, so the proof must be empty.
    let proven = if t.size == 0 {
        if consistency.is_empty() {
            Ok(())
        } else {
            Err("non-empty proof from the empty tree".to_owned())
        }
    } else {
        verify_consistency(t.size, n.size, consistency, &t.root, &n.root).map_err(|e| e.to_string())
    };
    if let Err(e) = proven {
        return Err(w.fork(format!(
            "tree of size {} at epoch {} is not proven to extend tree of size {} at epoch {}: {e}",
            n.size, n.epoch, t.size, t.epoch
        )));
    }
    if n.time_ms < t.time_ms {
        return Err(w.time_went_backwards());
    }
    if n.epoch == t.epoch + 1 && n.prev != t.body_hash() {
        return Err(w.broken_chain(format!(
            "epoch {} does not name epoch {} as its predecessor",
            n.epoch, t.epoch
        )));
    }
    Ok(Step::Advanced(new.clone()))
}

/// Checks one link of a chain of consecutive checkpoints (the auditor's walk): `next` must
/// follow `prev` by [`Checkpoint::follows`](crate::checkpoint::Checkpoint::follows). Two
/// checkpoints of the same epoch are fine if identical and a [`Violation::Fork`] otherwise.
///
/// Log consistency is not checked here: the auditor recomputes every root from the entries.
pub fn check_link(prev: &SignedCheckpoint, next: &SignedCheckpoint) -> Result<(), Violation> {
    let w = Witness {
        trusted: prev,
        new: next,
        proof: &[],
        chain: &[],
    };
    let (p, n) = (prev.checkpoint(), next.checkpoint());
    if p.origin == n.origin && p.epoch == n.epoch {
        return if p == n {
            Ok(())
        } else {
            Err(w.equivocation())
        };
    }
    n.follows(p).map_err(|e| match e {
        ChainError::OriginChanged { .. } => w.wrong_origin(),
        ChainError::EpochNotNext { prev, next } if next < prev => w.rollback(e.to_string()),
        ChainError::EpochNotNext { .. } | ChainError::PrevMismatch => w.broken_chain(e.to_string()),
        ChainError::SizeDecreased { .. } => w.rollback(e.to_string()),
        ChainError::TimeWentBackwards { .. } => w.time_went_backwards(),
    })
}

/// What a verifier has accepted so far. Replaced only after a verified step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedState {
    latest: SignedCheckpoint,
}

impl TrustedState {
    /// Starts from a checkpoint trusted out of band (pinned, or first use), already opened.
    pub fn new(initial: SignedCheckpoint) -> Self {
        Self { latest: initial }
    }

    pub fn latest(&self) -> &SignedCheckpoint {
        &self.latest
    }

    /// [`advance`]s to `new`; on any violation the state is left unchanged.
    pub fn update(
        &mut self,
        new: &SignedCheckpoint,
        consistency: &[Hash],
    ) -> Result<(), Violation> {
        if let Step::Advanced(next) = advance(&self.latest, new, consistency)? {
            self.latest = next;
        }
        Ok(())
    }
}

/// How far ahead of a verifier's clock a checkpoint's `time` may be, by default: 5 minutes.
///
/// A log stamps each checkpoint with its own clock when it seals the epoch, so an honest
/// checkpoint is never in the future; the bound only absorbs the skew between honest clocks.
/// Without it, one checkpoint dated far ahead would pass every freshness bound (`max_age`) for
/// as long as its date is ahead (`docs/protocol.md` §13.3).
pub const DEFAULT_MAX_AHEAD_MS: u64 = 5 * 60 * 1000;

/// A checkpoint dated more than the allowed bound after the verifier's clock (see
/// [`check_not_ahead`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the checkpoint of epoch {epoch} is dated {time_ms} ms, {ahead_ms} ms ahead of this clock \
     ({now_ms} ms), more than the allowed {max_ms} ms: the log signed a time in the future, or \
     this clock is behind"
)]
pub struct FromTheFuture {
    pub epoch: u64,
    /// The checkpoint's `time`.
    pub time_ms: u64,
    /// The verifier's clock when it checked.
    pub now_ms: u64,
    /// `time_ms - now_ms`.
    pub ahead_ms: u64,
    /// The bound.
    pub max_ms: u64,
}

/// Refuses a checkpoint whose `time` is more than `max_ahead_ms` after `now_ms` (the verifier's
/// clock). The one freshness rule every party applies to every checkpoint it takes (client,
/// witness, auditor), whatever the checkpoint was asked for: a checkpoint from the future is
/// never valid, and an old one is not refused here (that is `max_age`, the client's choice).
pub fn check_not_ahead(
    checkpoint: &Checkpoint,
    now_ms: u64,
    max_ahead_ms: u64,
) -> Result<(), FromTheFuture> {
    let ahead_ms = checkpoint.time_ms.saturating_sub(now_ms);
    if ahead_ms > max_ahead_ms {
        return Err(FromTheFuture {
            epoch: checkpoint.epoch,
            time_ms: checkpoint.time_ms,
            now_ms,
            ahead_ms,
            max_ms: max_ahead_ms,
        });
    }
    Ok(())
}

/// Two signed checkpoints of which neither is trusted more than the other (gossip: a client's
/// and a witness's), ordered by epoch (`older.epoch <= newer.epoch`). Decides everything the two
/// notes prove on their own, before anything is asked of the server:
///
/// - `Ok(None)`: consistent, and no proof is needed (same body; or a tree that is empty or of
///   the same size and root at the older epoch, with a valid link);
/// - `Ok(Some((older.size, newer.size)))`: every rule that needs no proof holds, and only an
///   RFC 9162 consistency proof between these sizes can settle the rest: ask for it and call
///   [`advance`]`(older, newer, proof)`;
/// - `Err`: the notes alone prove the violation (a second body for one epoch, a larger tree at
///   the older epoch, the same size with another root, a time going backwards, a broken `prev`
///   link between consecutive epochs); the evidence names `older` first.
pub fn proof_needed(
    older: &SignedCheckpoint,
    newer: &SignedCheckpoint,
) -> Result<Option<(u64, u64)>, Violation> {
    let (o, n) = (older.checkpoint(), newer.checkpoint());
    // Every case in which `advance` takes no proof: decided by `advance` itself.
    if o.origin != n.origin || o.epoch >= n.epoch || o.size == 0 || o.size >= n.size {
        return advance(older, newer, &[]).map(|_| None);
    }
    if n.epoch == o.epoch + 1 {
        check_link(older, newer)?;
    } else if n.time_ms < o.time_ms {
        let w = Witness {
            trusted: older,
            new: newer,
            proof: &[],
            chain: &[],
        };
        return Err(w.time_went_backwards());
    }
    Ok(Some((o.size, n.size)))
}
/// Checks that two signed checkpoints of one log are linked by an unbroken chain of `prev`
/// hashes: `chain` holds the bodies of the epochs from the older one's epoch up to the one before
/// the newer one's, oldest first, as served (see [`Evidence::chain`]). Use it for any gap; for
/// consecutive epochs (`chain` is then the older body alone) [`advance`] already checks the link.
/// Either checkpoint may be the trusted one: the roles only decide which note the evidence
/// calls trusted. Log consistency is [`advance`]'s.
///
/// The bodies need no signatures: starting from the newer checkpoint, each must hash to the
/// `prev` its successor names, so the newer checkpoint's signature covers all of them. A body that
/// does not is the answer's fault ([`BadChain`]). Once the bodies are authenticated, each must
/// follow the one before by [`Checkpoint::follows`] (same origin, consecutive epochs, tree size
/// and time not going down), and the first must be the older checkpoint's body: anything else
/// is a [`Violation`] whose [`Evidence`] holds both notes and the chain. In particular, an older
/// signed checkpoint whose body is not the one the newer checkpoint commits to for that epoch is
/// a [`Violation::Fork`].
pub fn verify_chain(
    trusted: &SignedCheckpoint,
    new: &SignedCheckpoint,
    chain: &[String],
) -> Result<(), ChainRefusal> {
    let w = Witness {
        trusted,
        new,
        proof: &[],
        chain,
    };
    let (older, newer) = if new.checkpoint().epoch < trusted.checkpoint().epoch {
        (new.checkpoint(), trusted.checkpoint())
    } else {
        (trusted.checkpoint(), new.checkpoint())
    };
    if older.origin != newer.origin {
        return Err(w.wrong_origin().into());
    }
    let want = newer.epoch - older.epoch;
    if chain.len() as u64 != want {
        return Err(BadChain::Length {
            from: older.epoch,
            to: newer.epoch,
            want,
            got: chain.len() as u64,
        }
        .into());
    }
    if want == 0 {
        return if older == newer {
            Ok(())
        } else {
            Err(w.equivocation().into())
        };
    }
    // From the top down: the body of epoch e must be the one epoch e + 1 names (then the newer
    // checkpoint's signature covers it), and epoch e + 1 must follow it by the chain rule. Only
    // the body above is kept, so the check needs no memory beyond the chain itself.
    let mut above = newer.clone();
    for (i, body) in chain.iter().enumerate().rev() {
        let epoch = older.epoch + i as u64;
        if sha256(body.as_bytes()) != above.prev {
            return Err(BadChain::NotNamed { epoch }.into());
        }
        let cp = Checkpoint::parse_body(body).map_err(|e: CheckpointError| {
            w.broken_chain(format!(
                "epoch {} names as its predecessor a body that is not a checkpoint: {e}",
                epoch + 1
            ))
        })?;
        above.follows(&cp).map_err(|e| w.link(above.epoch, e))?;
        above = cp;
    }
    // `above` is now the body the newer checkpoint commits to for the older one's epoch.
    if above != *older {
        return Err(w
            .fork(format!(
                "epoch {} has a signed checkpoint other than the body that epoch {}'s checkpoint \
                 commits to through the chain of prev links",
                older.epoch, newer.epoch,
            ))
            .into());
    }
    Ok(())
}
