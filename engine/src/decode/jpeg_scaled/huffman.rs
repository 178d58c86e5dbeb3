//! Huffman tables and the entropy-coded bit reader.
//!
//! The reader keeps a left-aligned 64-bit buffer. At a marker or at the end of the data it
//! feeds zero bytes (as libjpeg does) and counts them, so a scan that needed bits it never had
//! is detected afterwards ([`BitReader::overran`]) instead of looping or reading out of bounds.

use super::ScaledError;

/// Bits resolved by one table lookup; longer codes take the canonical slow path.
pub(crate) const LOOKUP_BITS: u32 = 10;

/// A Huffman table in canonical form with a first-level lookup table.
#[derive(Debug, Clone)]
pub(crate) struct HuffTable {
    /// `lookup[peek9]` = code length (low 4 bits, 0 = slow path) | symbol << 4.
    lookup: Box<[u16; 1 << LOOKUP_BITS]>,
    /// For AC tables: `fast_ac[peek10]` resolves a whole coefficient when its code and extra
    /// bits fit in the lookup: total bits (low 5 bits) | run << 8 | value << 16. 0 = no.
    fast_ac: Box<[u32; 1 << LOOKUP_BITS]>,
    /// Largest code of each length 1..=16 (as i32, -1 when there is none).
    maxcode: [i32; 18],
    /// Offset from a code of each length to its index in `values`.
    valoffset: [i32; 17],
    values: Vec<u8>,
}

impl HuffTable {
    /// Builds a table from the DHT counts (codes per length 1..=16) and symbols.
    pub(crate) fn new(counts: &[u8; 16], values: &[u8]) -> Result<Self, ScaledError> {
        let mut lookup = Box::new([0u16; 1 << LOOKUP_BITS]);
        let mut maxcode = [-1i32; 18];
        let mut valoffset = [0i32; 17];
        let mut code: u32 = 0;
        let mut k = 0usize;
        for len in 1..=16u32 {
            let count = usize::from(counts[len as usize - 1]);
            if count > 0 {
                valoffset[len as usize] = k as i32 - code as i32;
                for _ in 0..count {
                    if code >= 1 << len {
                        return Err(ScaledError::Corrupt("Huffman code lengths overflow"));
                    }
                    let symbol = *values.get(k).ok_or(ScaledError::Corrupt("short DHT"))?;
                    if len <= LOOKUP_BITS {
                        let shift = LOOKUP_BITS - len;
                        let first = (code << shift) as usize;
                        let entry = len as u16 | u16::from(symbol) << 4;
                        lookup[first..first + (1 << shift)].fill(entry);
                    }
                    code += 1;
                    k += 1;
                }
                maxcode[len as usize] = code as i32 - 1;
            }
            code <<= 1;
        }
        // Sentinel so the slow path always terminates.
        maxcode[17] = i32::MAX;
        let mut fast_ac = Box::new([0u32; 1 << LOOKUP_BITS]);
        for (peek, entry) in lookup.iter().enumerate() {
            let (len, symbol) = (u32::from(entry & 15), u32::from(entry >> 4));
            let (run, size) = (symbol >> 4, symbol & 15);
            if len == 0 || size == 0 || len + size > LOOKUP_BITS {
                continue;
            }
            let bits = (peek as u32 >> (LOOKUP_BITS - len - size)) & ((1 << size) - 1);
            let value = if bits < 1 << (size - 1) {
                bits as i32 - (1 << size) + 1
            } else {
                bits as i32
            };
            fast_ac[peek] = (len + size) | run << 8 | (value as u32) << 16;
        }
        Ok(HuffTable {
            lookup,
            fast_ac,
            maxcode,
            valoffset,
            values: values[..k].to_vec(),
        })
    }
}

impl HuffTable {
    /// The fast AC entry for `peek` (see [`Self::fast_ac`]): `Some((bits, run, value))`.
    #[inline(always)]
    pub(crate) fn fast_ac(&self, peek: usize) -> Option<(u32, usize, i16)> {
        let e = self.fast_ac[peek & ((1 << LOOKUP_BITS) - 1)];
        (e != 0).then_some((e & 31, ((e >> 8) & 15) as usize, (e >> 16) as i16))
    }
}

/// Reads bits from one entropy-coded segment (which may contain RSTn markers).
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    buf: u64,
    bits: u32,
    /// The reader is stopped at a marker (`data[pos] == 0xFF`, not stuffing).
    at_marker: bool,
    /// Zero bytes fed past a marker or the end of the data.
    padding: u32,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        BitReader {
            data,
            pos: 0,
            buf: 0,
            bits: 0,
            at_marker: false,
            padding: 0,
        }
    }

    /// Position in the data just past what the reader has consumed into its buffer.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Tops the buffer up to at least 57 bits.
    #[inline(always)]
    fn refill(&mut self) {
        // Fast path: eight bytes none of which is 0xFF.
        if !self.at_marker {
            if let Some(chunk) = self.data.get(self.pos..self.pos + 8) {
                let word = u64::from_be_bytes(chunk.try_into().unwrap_or([0; 8]));
                let inv = !word;
                let has_ff = inv.wrapping_sub(0x0101_0101_0101_0101) & !inv & 0x8080_8080_8080_8080;
                if has_ff == 0 {
                    let take = (64 - self.bits) / 8;
                    // take ≥ 1 because bits ≤ 56 when called from `ensure`.
                    let top = word >> (64 - 8 * take);
                    self.buf |= top << (64 - 8 * take - self.bits);
                    self.bits += 8 * take;
                    self.pos += take as usize;
                    return;
                }
            }
        }
        while self.bits <= 56 {
            let byte = self.next_byte();
            self.buf |= u64::from(byte) << (56 - self.bits);
            self.bits += 8;
        }
    }

    #[inline]
    fn next_byte(&mut self) -> u8 {
        if self.at_marker {
            self.padding = self.padding.saturating_add(1);
            return 0;
        }
        match self.data.get(self.pos) {
            None => {
                self.padding = self.padding.saturating_add(1);
                0
            }
            Some(&0xFF) => match self.data.get(self.pos + 1) {
                Some(0x00) => {
                    self.pos += 2;
                    0xFF
                }
                _ => {
                    self.at_marker = true;
                    self.padding = self.padding.saturating_add(1);
                    0
                }
            },
            Some(&b) => {
                self.pos += 1;
                b
            }
        }
    }

    /// Makes sure at least 32 bits are buffered (a code plus its extra bits).
    #[inline(always)]
    pub(crate) fn ensure(&mut self) {
        if self.bits < 32 {
            self.refill();
        }
    }

    /// Reads `n` ≤ 16 bits as an unsigned value. Call [`Self::ensure`] first.
    #[inline(always)]
    pub(crate) fn bits(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        let v = (self.buf >> (64 - n)) as u32;
        self.buf <<= n;
        self.bits -= n;
        v
    }

    /// Reads one bit, refilling as needed.
    #[inline(always)]
    pub(crate) fn bit(&mut self) -> bool {
        self.ensure();
        self.bits(1) == 1
    }

    /// Discards `n` ≤ 16 bits. Call [`Self::ensure`] first.
    #[inline(always)]
    pub(crate) fn skip(&mut self, n: u32) {
        self.buf <<= n;
        self.bits -= n;
    }

    /// Reads an `s`-bit magnitude category value and sign-extends it (JPEG's EXTEND).
    #[inline(always)]
    pub(crate) fn receive_extend(&mut self, s: u32) -> i32 {
        if s == 0 {
            return 0;
        }
        let v = self.bits(s) as i32;
        if v < 1 << (s - 1) {
            v - (1 << s) + 1
        } else {
            v
        }
    }

    /// Peeks the next [`LOOKUP_BITS`] bits. Call [`Self::ensure`] first.
    #[inline(always)]
    pub(crate) fn peek(&self) -> usize {
        (self.buf >> (64 - LOOKUP_BITS)) as usize
    }

    /// Decodes one Huffman symbol. Refills the buffer itself; leaves ≥ 16 bits for extra bits.
    #[inline(always)]
    pub(crate) fn decode(&mut self, table: &HuffTable) -> Result<u8, ScaledError> {
        self.ensure();
        let entry = table.lookup[(self.buf >> (64 - LOOKUP_BITS)) as usize];
        let len = u32::from(entry & 15);
        if len != 0 {
            self.skip(len);
            return Ok((entry >> 4) as u8);
        }
        self.decode_slow(table)
    }

    /// Codes longer than the lookup. A bit pattern that is no code of the table (damaged data)
    /// decodes as symbol 0 after consuming 17 bits, as libjpeg does ("fake a zero as the safest
    /// result"): 0 is a zero DC difference or an end of block, and decoding goes on to the next
    /// restart marker, where it resynchronises.
    #[cold]
    fn decode_slow(&mut self, table: &HuffTable) -> Result<u8, ScaledError> {
        let word = (self.buf >> 48) as i32;
        for len in LOOKUP_BITS as usize + 1..=16 {
            let code = word >> (16 - len);
            if code <= table.maxcode[len] {
                self.skip(len as u32);
                let index = code + table.valoffset[len];
                return Ok(table.values.get(index as usize).copied().unwrap_or(0));
            }
        }
        self.skip(17);
        Ok(0)
    }

    /// Whether the decoding so far consumed bits the data did not have (truncated or
    /// interrupted by a marker).
    pub(crate) fn overran(&self) -> bool {
        u64::from(self.bits) < u64::from(self.padding) * 8
    }

    /// Handles a restart marker: drops the buffered bits and moves past the next RSTn, skipping
    /// junk before it (and forgetting any bits the damaged interval lacked). Returns `false`
    /// when no restart marker follows (truncated data, or a real marker such as EOI).
    pub(crate) fn restart(&mut self) -> bool {
        self.buf = 0;
        self.bits = 0;
        self.padding = 0;
        // Normally we stopped right at the marker; otherwise skip junk up to the next one.
        match super::markers::seek_restart(self.data, self.pos) {
            Some(next) => {
                self.pos = next;
                self.at_marker = false;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_canonical_codes_and_stuffing() {
        // Two symbols of length 1 ('a' = 0, 'b' = 10 is not canonical; use lengths 1 and 2).
        let mut counts = [0u8; 16];
        counts[0] = 1;
        counts[1] = 2;
        let table = HuffTable::new(&counts, &[7, 8, 9]).unwrap();
        // Bits: 0 | 10 | 11 | then 0xFF 0x00 stuffed byte = 11111111.
        let data = [0b0101_1111, 0xFF, 0x00];
        let mut r = BitReader::new(&data);
        assert_eq!(r.decode(&table).unwrap(), 7);
        assert_eq!(r.decode(&table).unwrap(), 8);
        assert_eq!(r.decode(&table).unwrap(), 9);
        r.ensure();
        assert_eq!(r.bits(3), 0b111);
        assert_eq!(r.bits(8), 0xFF);
        assert!(!r.overran());
        r.ensure();
        r.bits(8);
        assert!(r.overran());
    }

    #[test]
    fn rejects_overfull_tables() {
        let mut counts = [0u8; 16];
        counts[0] = 3;
        assert!(HuffTable::new(&counts, &[1, 2, 3]).is_err());
    }

    #[test]
    fn extend_signs() {
        let data = [0b0110_0000];
        let mut r = BitReader::new(&data);
        r.ensure();
        assert_eq!(r.receive_extend(3), -4); // 011 → 3 − 7
        assert_eq!(r.receive_extend(0), 0);
    }
}
