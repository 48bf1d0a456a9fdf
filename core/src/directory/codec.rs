//! The byte reader shared by the directory's decoders: every read either takes exactly the bytes
//! asked for or names the field that was cut short.

use super::DirectoryError;
use crate::entry::FORMAT_V1;

pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// Starts reading an entry, checking the common `format || kind` header.
    pub(crate) fn entry(bytes: &'a [u8], kind: u8) -> Result<Self, DirectoryError> {
        let mut r = Reader(bytes);
        let version = r.u8("format").map_err(|_| DirectoryError::Empty)?;
        if version != FORMAT_V1 {
            return Err(DirectoryError::UnsupportedVersion(version));
        }
        let got = r.u8("kind")?;
        if got != kind {
            return Err(DirectoryError::WrongKind { want: kind, got });
        }
        Ok(r)
    }

    pub(crate) fn take(
        &mut self,
        n: usize,
        what: &'static str,
    ) -> Result<&'a [u8], DirectoryError> {
        if self.0.len() < n {
            return Err(DirectoryError::Truncated(what));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], DirectoryError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DirectoryError> {
        Ok(self.take(1, what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DirectoryError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DirectoryError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DirectoryError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// Ends the entry: canonical bytes have nothing after the last field.
    pub(crate) fn finish(self) -> Result<(), DirectoryError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DirectoryError::TrailingBytes(self.0.len()))
        }
    }
}
