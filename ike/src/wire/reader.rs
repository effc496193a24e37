//! A cursor over untrusted bytes: every read is checked and returns `None`
//! past the end, so decoders map a short read to their own error.

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.buf.split_at_checked(n)?;
        self.buf = tail;
        Some(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, tail) = self.buf.split_first_chunk::<N>()?;
        self.buf = tail;
        Some(*head)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        let (&b, tail) = self.buf.split_first()?;
        self.buf = tail;
        Some(b)
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.array::<2>().map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.array::<4>().map(u32::from_be_bytes)
    }

    /// What is left, consuming it.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}

/// Overwrites the two bytes at `pos` (written earlier as a placeholder).
pub(crate) fn patch_u16(out: &mut [u8], pos: usize, v: u16) {
    if let Some(slot) = out.get_mut(pos..).and_then(|s| s.first_chunk_mut::<2>()) {
        *slot = v.to_be_bytes();
    }
}

/// Overwrites the four bytes at `pos`.
pub(crate) fn patch_u32(out: &mut [u8], pos: usize, v: u32) {
    if let Some(slot) = out.get_mut(pos..).and_then(|s| s.first_chunk_mut::<4>()) {
        *slot = v.to_be_bytes();
    }
}
