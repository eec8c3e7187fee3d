//! A bounds-checked cursor over a message body.

use super::WireError;

/// Reads fields of one message body; every read checks bounds and reports which message broke.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, pos: 0, what }
    }

    fn malformed(&self) -> WireError {
        WireError::Malformed { what: self.what }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        let byte = *self.buf.get(self.pos).ok_or_else(|| self.malformed())?;
        self.pos += 1;
        Ok(byte)
    }

    pub(crate) fn i16(&mut self) -> Result<i16, WireError> {
        let bytes = self.bytes(2)?;
        Ok(i16::from_be_bytes([bytes[0], bytes[1]]))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, WireError> {
        let bytes = self.bytes(4)?;
        Ok(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.malformed())?;
        let slice = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.malformed())?;
        self.pos = end;
        Ok(slice)
    }

    /// A NUL-terminated string; must be UTF-8 (the proxy only reads names and SQL text).
    pub(crate) fn cstr(&mut self) -> Result<&'a str, WireError> {
        let rest = self.buf.get(self.pos..).ok_or_else(|| self.malformed())?;
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| self.malformed())?;
        let text = std::str::from_utf8(&rest[..nul]).map_err(|_| self.malformed())?;
        self.pos += nul + 1;
        Ok(text)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }
}
