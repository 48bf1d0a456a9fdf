//! Message entries (kind `0x03`): the tamper-evident message log, signed by authors' keys.

use super::codec::Reader;
use super::key::UserSigner;
use super::{DirectoryError, Label, KIND_MESSAGE, MAX_SIGNATURE_LEN};
use crate::entry::{Namespace, FORMAT_V1, MAX_PAYLOAD_LEN};
use crate::hash::{leaf_hash, Hash};

/// Domain tag prepended to the message body before signing (see [`Message::signed_bytes`]).
pub const MESSAGE_SIGNING_TAG: &[u8] = b"keytrail/v1/message\x00";

/// A Message entry: `payload` under `namespace`, the `sequence`-th message of `author`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    namespace: Namespace,
    author: Label,
    sequence: u64,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

impl Message {
    /// A message with a signature made elsewhere. Whether the signature verifies is a rule
    /// ([`super::rules::apply_message`]), since it depends on the author's current key.
    pub fn new(
        namespace: Namespace,
        author: Label,
        sequence: u64,
        payload: Vec<u8>,
        signature: Vec<u8>,
    ) -> Result<Message, DirectoryError> {
        check_fields(sequence, &payload)?;
        if signature.is_empty() || signature.len() > MAX_SIGNATURE_LEN {
            return Err(DirectoryError::SignatureLength(signature.len()));
        }
        Ok(Message {
            namespace,
            author,
            sequence,
            payload,
            signature,
        })
    }

    /// Builds and signs a message with the author's key.
    pub fn sign(
        namespace: Namespace,
        author: Label,
        sequence: u64,
        payload: Vec<u8>,
        signer: &UserSigner,
    ) -> Result<Message, DirectoryError> {
        check_fields(sequence, &payload)?;
        let mut signed = MESSAGE_SIGNING_TAG.to_vec();
        write_body(&mut signed, &namespace, &author, sequence, &payload);
        let signature = signer.sign(&signed);
        Message::new(namespace, author, sequence, payload, signature)
    }

    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    pub fn author(&self) -> &Label {
        &self.author
    }

    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// Exactly what the author signs: the tag, then every field before the signature (namespace,
    /// author, sequence, payload), without the format and kind header, as for updates.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = MESSAGE_SIGNING_TAG.to_vec();
        write_body(
            &mut out,
            &self.namespace,
            &self.author,
            self.sequence,
            &self.payload,
        );
        out
    }

    /// The canonical entry bytes that are hashed into the log.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + 1 + 64 + 32 + 8 + 4 + self.payload.len() + 2 + 64);
        out.push(FORMAT_V1);
        out.push(KIND_MESSAGE);
        write_body(
            &mut out,
            &self.namespace,
            &self.author,
            self.sequence,
            &self.payload,
        );
        // Bounded by MAX_SIGNATURE_LEN: the cast cannot truncate.
        out.extend_from_slice(&(self.signature.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.signature);
        out
    }

    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.encode())
    }

    /// Parses canonical entry bytes (format and kind header included); anything else is an error.
    pub fn decode(bytes: &[u8]) -> Result<Message, DirectoryError> {
        let mut r = Reader::entry(bytes, KIND_MESSAGE)?;
        let ns_len = r.u8("namespace length")? as usize;
        let ns = r.take(ns_len, "namespace")?;
        let ns = std::str::from_utf8(ns).map_err(|_| {
            DirectoryError::Namespace(crate::entry::EntryError::NamespaceCharacters(
                String::from_utf8_lossy(ns).into_owned(),
            ))
        })?;
        let namespace = Namespace::new(ns).map_err(DirectoryError::Namespace)?;
        let author = Label::from_bytes(r.array("author")?);
        let sequence = r.u64("sequence")?;
        if sequence == 0 {
            return Err(DirectoryError::ZeroSequence);
        }
        let len = r.u32("payload length")? as usize;
        if len == 0 || len > MAX_PAYLOAD_LEN {
            return Err(DirectoryError::PayloadLength(len));
        }
        let payload = r.take(len, "payload")?.to_vec();
        let sig_len = r.u16("signature length")? as usize;
        if sig_len == 0 || sig_len > MAX_SIGNATURE_LEN {
            return Err(DirectoryError::SignatureLength(sig_len));
        }
        let signature = r.take(sig_len, "signature")?.to_vec();
        r.finish()?;
        Message::new(namespace, author, sequence, payload, signature)
    }
}

fn check_fields(sequence: u64, payload: &[u8]) -> Result<(), DirectoryError> {
    if sequence == 0 {
        return Err(DirectoryError::ZeroSequence);
    }
    if payload.is_empty() || payload.len() > MAX_PAYLOAD_LEN {
        return Err(DirectoryError::PayloadLength(payload.len()));
    }
    Ok(())
}

fn write_body(out: &mut Vec<u8>, ns: &Namespace, author: &Label, sequence: u64, payload: &[u8]) {
    let ns = ns.as_str().as_bytes();
    // Namespace (<= 64) and payload (<= 32 KiB) lengths are bounded by their constructors.
    out.push(ns.len() as u8);
    out.extend_from_slice(ns);
    out.extend_from_slice(author.as_bytes());
    out.extend_from_slice(&sequence.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}
