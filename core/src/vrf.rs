//! ECVRF-EDWARDS25519-SHA512-TAI, the verifiable random function of RFC 9381 (suite `0x03`).
//!
//! A VRF is a keyed hash whose holder can prove, to anyone with the public key, that an output
//! `beta` is the right one for an input `alpha`. KeyTrail will use it to derive labels (see
//! [`Label::from_vrf_output`](crate::directory::label::Label::from_vrf_output)), so the public log
//! does not reveal which identifiers have keys. Nothing uses it yet.
//!
//! Exactly RFC 9381 §5 with the suite of §5.5 (edwards25519, SHA-512, try-and-increment):
//!
//! - secret key: a 32-byte seed, expanded as in RFC 8032 §5.1.5: `h = SHA-512(seed)`, the secret
//!   scalar `x` is the clamped first half, the nonce key the second half; `Y = x·B`, which is
//!   the Ed25519 public key of the same seed;
//! - `encode_to_curve` (§5.4.1.1, try-and-increment): for `ctr = 0, 1, …`,
//!   `SHA-512(0x03 || 0x01 || PK || alpha || ctr || 0x00)[..32]` decoded as a point, times the
//!   cofactor 8, until it is a valid point other than the identity;
//! - nonce (§5.4.2.2): `k = SHA-512(h[32..64] || point_to_string(H)) mod L`;
//! - challenge (§5.4.3): `c = SHA-512(0x03 || 0x02 || Y || H || Gamma || U || V || 0x00)[..16]`;
//! - proof `pi = Gamma (32) || c (16) || s (32)` with `Gamma = x·H`, `s = k + c·x mod L`;
//! - output (§5.2): `beta = SHA-512(0x03 || 0x03 || 8·Gamma || 0x00)`;
//! - verification (§5.3) with `validate_key`: the public key and Gamma must be canonical
//!   RFC 8032 §5.1.3 encodings (y < p, no "negative zero"), the public key must not be of small
//!   order, and `s` must be below the group order `L`.
//!
//! Points are encoded as in RFC 8032 §5.1.2 and integers little-endian. Secret-dependent work
//! (`x·B`, `x·H`, `k·B`, `k·H`) uses curve25519-dalek's constant-time multiplication; the
//! try-and-increment loop depends on the public input only, and verification, on public values
//! only, uses variable-time double-base multiplication (`U` and `V` each in one pass).

use std::fmt;

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::{clamp_integer, Scalar};
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha512};

/// The suite string of ECVRF-EDWARDS25519-SHA512-TAI.
pub const SUITE: u8 = 0x03;
/// Length of an encoded public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an encoded proof: Gamma (32) || c (16) || s (32).
pub const PROOF_LEN: usize = 80;
/// Length of the VRF output `beta` (a SHA-512 digest).
pub const OUTPUT_LEN: usize = 64;

const C_LEN: usize = 16;

/// The VRF output `beta`.
pub type VrfOutput = [u8; OUTPUT_LEN];

/// Why a public key or proof is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VrfError {
    #[error("VRF public key is not a canonical encoding of a curve point")]
    InvalidPublicKey,
    #[error("VRF public key is of small order")]
    SmallOrderPublicKey,
    #[error("VRF proof's Gamma is not a canonical encoding of a curve point")]
    InvalidGamma,
    #[error("VRF proof's s is not below the group order")]
    NonCanonicalScalar,
    #[error("VRF proof does not verify")]
    InvalidProof,
    /// `encode_to_curve` found no point in 256 tries (probability about 2^-256).
    #[error("VRF input does not encode to a curve point")]
    EncodeToCurve,
}

/// A VRF secret key: the 32-byte RFC 8032 seed. `Debug` never shows it, and the seed is zeroized
/// on drop (the scalars derived from it during [`VrfSecretKey::prove`] are not).
#[derive(Clone)]
pub struct VrfSecretKey {
    seed: SigningKey,
    public: VrfPublicKey,
}

impl VrfSecretKey {
    /// The key with this seed (RFC 8032 secret key). Use 32 bytes from a CSPRNG.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let seed = SigningKey::from_bytes(&seed);
        let (x, _) = expand(&seed);
        let point = EdwardsPoint::mul_base(&x);
        let public = VrfPublicKey {
            bytes: point.compress().to_bytes(),
            point,
        };
        Self { seed, public }
    }

    pub fn public(&self) -> VrfPublicKey {
        self.public.clone()
    }

    /// The proof for `alpha` (RFC 9381 §5.1).
    pub fn prove(&self, alpha: &[u8]) -> VrfProof {
        let (x, nonce_key) = expand(&self.seed);
        // Fails with probability about 2^-256 over the hash: no input can be chosen to make it.
        let h = encode_to_curve(&self.public.bytes, alpha)
            .expect("encode_to_curve found a point within 256 tries");
        let h_string = h.compress().to_bytes();
        let gamma = h * x;
        let k = Scalar::from_bytes_mod_order_wide(
            &Sha512::new()
                .chain_update(nonce_key)
                .chain_update(h_string)
                .finalize()
                .into(),
        );
        let u = EdwardsPoint::mul_base(&k);
        let v = h * k;
        let gamma_bytes = gamma.compress().to_bytes();
        let c_bytes = challenge(&self.public.bytes, &h_string, &gamma_bytes, &u, &v);
        let s = k + challenge_scalar(&c_bytes) * x;

        let mut bytes = [0u8; PROOF_LEN];
        bytes[..32].copy_from_slice(&gamma_bytes);
        bytes[32..48].copy_from_slice(&c_bytes);
        bytes[48..].copy_from_slice(s.as_bytes());
        VrfProof {
            gamma,
            c: c_bytes,
            s,
            bytes,
        }
    }

    /// The proof for `alpha` and its output `beta` (what [`VrfPublicKey::verify`] returns for
    /// it), without verifying the proof again.
    pub fn prove_with_output(&self, alpha: &[u8]) -> (VrfProof, VrfOutput) {
        let proof = self.prove(alpha);
        let beta = proof_to_hash(&proof.gamma);
        (proof, beta)
    }
}

impl fmt::Debug for VrfSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VrfSecretKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// A VRF public key that passed RFC 9381 `validate_key`: a canonical encoding of a curve point
/// that is not of small order.
#[derive(Clone)]
pub struct VrfPublicKey {
    bytes: [u8; PUBLIC_KEY_LEN],
    point: EdwardsPoint,
}

impl VrfPublicKey {
    /// Decodes and validates a public key (RFC 9381 §5.3 steps 1–2, §5.4.5).
    pub fn from_bytes(bytes: &[u8; PUBLIC_KEY_LEN]) -> Result<Self, VrfError> {
        let point = decode_point(bytes).ok_or(VrfError::InvalidPublicKey)?;
        if point.is_small_order() {
            return Err(VrfError::SmallOrderPublicKey);
        }
        Ok(Self {
            bytes: *bytes,
            point,
        })
    }

    pub fn to_bytes(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.bytes
    }

    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.bytes
    }

    /// Verifies `proof` for `alpha` and returns the VRF output `beta` (RFC 9381 §5.3).
    pub fn verify(&self, alpha: &[u8], proof: &VrfProof) -> Result<VrfOutput, VrfError> {
        let h = encode_to_curve(&self.bytes, alpha).ok_or(VrfError::EncodeToCurve)?;
        let c = challenge_scalar(&proof.c);
        // U = s·B − c·Y, V = s·H − c·Gamma. Public values only, so variable time is fine.
        let u = EdwardsPoint::vartime_double_scalar_mul_basepoint(&-c, &self.point, &proof.s);
        let v = EdwardsPoint::vartime_multiscalar_mul([proof.s, -c], [h, proof.gamma]);
        let gamma_bytes: [u8; 32] = proof.bytes[..32].try_into().expect("32 bytes");
        let expected = challenge(&self.bytes, &h.compress().to_bytes(), &gamma_bytes, &u, &v);
        if expected != proof.c {
            return Err(VrfError::InvalidProof);
        }
        Ok(proof_to_hash(&proof.gamma))
    }
}

impl PartialEq for VrfPublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for VrfPublicKey {}

impl fmt::Debug for VrfPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VrfPublicKey({})", hex::encode(self.bytes))
    }
}

/// A decoded VRF proof (RFC 9381 §5.4.4): Gamma a canonical point encoding, `s < L`.
#[derive(Clone)]
pub struct VrfProof {
    gamma: EdwardsPoint,
    c: [u8; C_LEN],
    s: Scalar,
    bytes: [u8; PROOF_LEN],
}

impl VrfProof {
    /// Decodes `Gamma || c || s`, refusing a non-canonical Gamma and `s ≥ L`.
    pub fn from_bytes(bytes: &[u8; PROOF_LEN]) -> Result<Self, VrfError> {
        let gamma_bytes: [u8; 32] = bytes[..32].try_into().expect("32 bytes");
        let gamma = decode_point(&gamma_bytes).ok_or(VrfError::InvalidGamma)?;
        let c: [u8; C_LEN] = bytes[32..48].try_into().expect("16 bytes");
        let s_bytes: [u8; 32] = bytes[48..].try_into().expect("32 bytes");
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))
            .ok_or(VrfError::NonCanonicalScalar)?;
        Ok(Self {
            gamma,
            c,
            s,
            bytes: *bytes,
        })
    }

    pub fn to_bytes(&self) -> [u8; PROOF_LEN] {
        self.bytes
    }

    pub fn as_bytes(&self) -> &[u8; PROOF_LEN] {
        &self.bytes
    }
}

impl PartialEq for VrfProof {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for VrfProof {}

impl fmt::Debug for VrfProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VrfProof({})", hex::encode(self.bytes))
    }
}

/// RFC 8032 §5.1.5 expansion: the secret scalar (clamped, reduced mod L, which changes no
/// product with a point of the prime-order subgroup) and the nonce key.
fn expand(seed: &SigningKey) -> (Scalar, [u8; 32]) {
    let h = Sha512::digest(seed.as_bytes());
    let lower: [u8; 32] = h[..32].try_into().expect("32 bytes");
    let upper: [u8; 32] = h[32..].try_into().expect("32 bytes");
    (Scalar::from_bytes_mod_order(clamp_integer(lower)), upper)
}

/// RFC 8032 §5.1.3 decoding, strictly: `decompress` alone accepts y ≥ p and x = 0 with the sign
/// bit set, so the bytes must be the point's one encoding.
fn decode_point(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    let point = CompressedEdwardsY(*bytes).decompress()?;
    crate::edwards::is_canonical_encoding(bytes).then_some(point)
}

/// RFC 9381 §5.4.1.1 with `encode_to_curve_salt = PK_string`.
fn encode_to_curve(public_key: &[u8; 32], alpha: &[u8]) -> Option<EdwardsPoint> {
    (0..=u8::MAX).find_map(|ctr| {
        let hash = Sha512::new()
            .chain_update([SUITE, 0x01])
            .chain_update(public_key)
            .chain_update(alpha)
            .chain_update([ctr, 0x00])
            .finalize();
        let candidate: [u8; 32] = hash[..32].try_into().expect("32 bytes");
        let h = decode_point(&candidate)?.mul_by_cofactor();
        (!h.is_identity()).then_some(h)
    })
}

/// RFC 9381 §5.4.3 over (Y, H, Gamma, U, V), truncated to `cLen = 16` bytes.
fn challenge(
    y: &[u8; 32],
    h: &[u8; 32],
    gamma: &[u8; 32],
    u: &EdwardsPoint,
    v: &EdwardsPoint,
) -> [u8; C_LEN] {
    let digest = Sha512::new()
        .chain_update([SUITE, 0x02])
        .chain_update(y)
        .chain_update(h)
        .chain_update(gamma)
        .chain_update(u.compress().as_bytes())
        .chain_update(v.compress().as_bytes())
        .chain_update([0x00])
        .finalize();
    digest[..C_LEN].try_into().expect("16 bytes")
}

fn challenge_scalar(c: &[u8; C_LEN]) -> Scalar {
    let mut wide = [0u8; 32];
    wide[..C_LEN].copy_from_slice(c);
    Scalar::from_bytes_mod_order(wide)
}

/// RFC 9381 §5.2.
fn proof_to_hash(gamma: &EdwardsPoint) -> VrfOutput {
    Sha512::new()
        .chain_update([SUITE, 0x03])
        .chain_update(gamma.mul_by_cofactor().compress().as_bytes())
        .chain_update([0x00])
        .finalize()
        .into()
}
