//! Labels: the 32-byte map keys that stand for user identifiers (`docs/protocol.md` §9.1).
//!
//! A log's labels are VRF outputs (RFC 9381 ECVRF-EDWARDS25519-SHA512-TAI, [`crate::vrf`]) of
//! its users' identifiers under the log's VRF key: only the holder of the VRF secret key (the
//! server) can compute the label of an identifier, so the public log does not reveal which
//! identifiers have keys. Anyone holding the VRF public key can check, with the proof the server
//! sends in every answer, that a label is the one of the identifier asked about
//! ([`verify_label`](super::verify::verify_label)).

use super::{DirectoryError, MAX_IDENTIFIER_LEN};
use crate::vrf::{VrfOutput, VrfProof, VrfSecretKey};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use unicode_normalization::UnicodeNormalization as _;

/// Domain tag of the VRF input (and of the example labels of [`Label::from_identifier`]).
pub const LABEL_TAG: &[u8] = b"keytrail/v1/label\x00";

/// A label: 32 opaque bytes naming one user in the map and the log.
///
/// Nothing but label derivation ([`vrf_input`], [`Label::from_vrf_output`]) depends on how the
/// bytes were made: the map, the rules, the auditor and every proof treat them as opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label([u8; 32]);

/// Why a character is not allowed in an identifier ([`canonical_identifier`]). Every class is
/// one that prints as nothing, prints like something else, or prints differently depending on
/// the font or software, so that two identifiers could look alike and have different labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedClass {
    /// Unicode `Cc`: C0 and C1 controls, DEL.
    Control,
    /// Unicode `Cf`: zero-width characters, joiners, bidi controls, soft hyphen, BOM, tags.
    Format,
    /// Unicode `Zs`, `Zl`, `Zp`: spaces (an invisible trailing one, or U+00A0 for U+0020) and the
    /// line and paragraph separators.
    Separator,
    /// Unicode `Co`: private use, drawn as whatever a font chooses.
    PrivateUse,
    /// Unicode `Cn`: unassigned code points and noncharacters. Refused also because a later
    /// Unicode version may assign them a class refused here.
    Unassigned,
    /// Default-ignorable characters that are not `Cf` (variation selectors, the combining grapheme
    /// joiner, Hangul fillers, …): drawn as nothing ([`IGNORABLE_NOT_FORMAT`]).
    Ignorable,
}

impl std::fmt::Display for RefusedClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RefusedClass::Control => "a control character (Unicode Cc)",
            RefusedClass::Format => "an invisible format character (Unicode Cf)",
            RefusedClass::Separator => "a space or separator (Unicode Zs, Zl or Zp)",
            RefusedClass::PrivateUse => "a private-use character (Unicode Co)",
            RefusedClass::Unassigned => "an unassigned code point or noncharacter (Unicode Cn)",
            RefusedClass::Ignorable => "a default-ignorable character, drawn as nothing",
        })
    }
}

/// The characters of Unicode's `Default_Ignorable_Code_Point` (DerivedCoreProperties.txt) that
/// are neither `Cf` nor `Cn` (those two classes are refused whole): they are drawn as nothing
/// yet are letters or marks. A test checks each range against the general-category data.
pub const IGNORABLE_NOT_FORMAT: &[(char, char)] = &[
    ('\u{034F}', '\u{034F}'),   // COMBINING GRAPHEME JOINER
    ('\u{115F}', '\u{1160}'),   // HANGUL CHOSEONG / JUNGSEONG FILLER
    ('\u{17B4}', '\u{17B5}'),   // KHMER VOWEL INHERENT AQ, AA
    ('\u{180B}', '\u{180D}'),   // MONGOLIAN FREE VARIATION SELECTOR ONE..THREE
    ('\u{180F}', '\u{180F}'),   // MONGOLIAN FREE VARIATION SELECTOR FOUR
    ('\u{3164}', '\u{3164}'),   // HANGUL FILLER
    ('\u{FE00}', '\u{FE0F}'),   // VARIATION SELECTOR-1..16
    ('\u{FFA0}', '\u{FFA0}'),   // HALFWIDTH HANGUL FILLER
    ('\u{E0100}', '\u{E01EF}'), // VARIATION SELECTOR-17..256
];

/// The class that refuses `c` in an identifier, if any.
pub fn refused_class(c: char) -> Option<RefusedClass> {
    use unicode_properties::{GeneralCategory as G, UnicodeGeneralCategory as _};
    match c.general_category() {
        G::Control => Some(RefusedClass::Control),
        G::Format => Some(RefusedClass::Format),
        G::SpaceSeparator | G::LineSeparator | G::ParagraphSeparator => {
            Some(RefusedClass::Separator)
        }
        G::PrivateUse => Some(RefusedClass::PrivateUse),
        // A `char` is never a surrogate.
        G::Unassigned | G::Surrogate => Some(RefusedClass::Unassigned),
        _ if IGNORABLE_NOT_FORMAT
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&c)) =>
        {
            Some(RefusedClass::Ignorable)
        }
        _ => None,
    }
}

/// An identifier in Unicode Normalization Form C. Nothing else is checked: this is only the
/// normalization, for keys derived from identifiers the same way as labels are.
pub fn normalize_identifier(identifier: &str) -> Cow<'_, str> {
    if unicode_normalization::is_nfc(identifier) {
        Cow::Borrowed(identifier)
    } else {
        Cow::Owned(identifier.nfc().collect())
    }
}

/// The canonical form of a user identifier, the one every party puts in the VRF input: its NFC
/// form (canonically equivalent identifiers are one identifier, with one label), which must be
/// 1 to 256 bytes of UTF-8 with no character of a [`RefusedClass`] (so that what a client prints
/// is what was hashed, and two identifiers that print alike are not two labels).
pub fn canonical_identifier(identifier: &str) -> Result<Cow<'_, str>, DirectoryError> {
    // NFC grows a string at most 3 times; anything this long is too long whatever its form, and
    // is refused before normalizing it.
    if identifier.len() > 4 * MAX_IDENTIFIER_LEN {
        return Err(DirectoryError::IdentifierLength(identifier.len()));
    }
    let canonical = normalize_identifier(identifier);
    if canonical.is_empty() || canonical.len() > MAX_IDENTIFIER_LEN {
        return Err(DirectoryError::IdentifierLength(canonical.len()));
    }
    if let Some((at, ch, class)) = canonical
        .char_indices()
        .find_map(|(at, ch)| refused_class(ch).map(|class| (at, ch, class)))
    {
        return Err(DirectoryError::IdentifierCharacter { ch, at, class });
    }
    Ok(canonical)
}

/// Checks a user identifier: [`canonical_identifier`] succeeds.
pub fn check_identifier(identifier: &str) -> Result<(), DirectoryError> {
    canonical_identifier(identifier).map(drop)
}

/// The VRF input `alpha` of an identifier: `"keytrail/v1/label" || 0x00 || identifier`, the
/// identifier in its [canonical form](canonical_identifier) (UTF-8).
///
/// The tag versions the input; the VRF itself already separates its hashes by suite and public
/// key, so the same identifier under another log's VRF key has an unrelated label.
pub fn vrf_input(identifier: &str) -> Result<Vec<u8>, DirectoryError> {
    let identifier = canonical_identifier(identifier)?;
    let mut alpha = Vec::with_capacity(LABEL_TAG.len() + identifier.len());
    alpha.extend_from_slice(LABEL_TAG);
    alpha.extend_from_slice(identifier.as_bytes());
    Ok(alpha)
}

impl Label {
    /// The label of `identifier` under the VRF key `key`, with the proof that goes with it: what
    /// the server computes (about 125 µs) once per identifier.
    pub fn prove(
        key: &VrfSecretKey,
        identifier: &str,
    ) -> Result<(Label, VrfProof), DirectoryError> {
        let (proof, beta) = key.prove_with_output(&vrf_input(identifier)?);
        Ok((Label::from_vrf_output(&beta), proof))
    }

    /// **Not a log's label.** `SHA-256("keytrail/v1/label\0" || identifier)`: a fixed label for
    /// tests and for the encoding examples of `docs/protocol.md` §9.5, which need one without a
    /// VRF key. A log's labels come from [`Label::prove`] (server) and
    /// [`verify_label`](super::verify::verify_label) (everyone else).
    pub fn from_identifier(identifier: &str) -> Result<Label, DirectoryError> {
        let identifier = canonical_identifier(identifier)?;
        let mut h = Sha256::new();
        h.update(LABEL_TAG);
        h.update(identifier.as_bytes());
        Ok(Label(h.finalize().into()))
    }

    /// The label for an RFC 9381 VRF output: the first 32 bytes of `beta`.
    ///
    /// `beta` is already a domain-separated SHA-512 output (`SHA-512(0x03 || 0x03 || 8·Gamma ||
    /// 0x00)`, [`crate::vrf`]), so its first half is as uniform as any hash of it would be and a
    /// second hash would add nothing.
    pub fn from_vrf_output(beta: &VrfOutput) -> Label {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&beta[..32]);
        Label(bytes)
    }

    /// Wraps label bytes read from an entry or a proof.
    pub const fn from_bytes(bytes: [u8; 32]) -> Label {
        Label(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}
