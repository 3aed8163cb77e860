//! The binary arithmetic coding engine: regular, bypass and terminating bins (spec §2).
//!
//! The decoder reads hostile bytes, so indexing that could panic is denied here: every byte is
//! read with `get`, and bytes past the end read as zero.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use crate::contexts::{ContextModel, DecModel, RLPS_ROWS};
use crate::error::{Error, Result};

/// `bits_left` below which bytes are moved out of `low`. The spec moves one byte out as soon as
/// `bits_left < 12` (§2.2); letting up to three more bytes collect in the 64-bit `low` and
/// moving them out together produces the same bytes (a carry reaches the same byte either way)
/// with a third of the checks taken.
const OUT_THRESHOLD: i32 = 12 - 24;

/// The registers of the encoder that every bin touches, kept apart so that a hot loop can hold
/// them in locals (see [`ArithEncoder::parts`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct EncState {
    low: u64,
    range: u32,
    bits_left: i32,
}

/// Bytes moved out of `low`, and those held back because a carry may still reach them.
#[derive(Clone, Debug, Default)]
pub(crate) struct EncOut {
    buffered: u8,
    n_buffered: u64,
    out: Vec<u8>,
    bins: u64,
}

impl EncOut {
    /// Moves whole bytes out of `low` until `bits_left >= 12` (spec §2.2, repeated).
    #[cold]
    #[inline(never)]
    fn write_out(&mut self, mut low: u64, mut bits_left: i32) -> (u64, i32) {
        while bits_left < 12 {
            let lead = (low >> (24 - bits_left)) as u32;
            bits_left += 8;
            low &= (1u64 << (32 - bits_left)) - 1;
            if lead == 0xFF {
                self.n_buffered += 1;
            } else if self.n_buffered > 0 {
                let carry = lead >> 8;
                self.out.push(self.buffered.wrapping_add(carry as u8));
                let fill = 0xFFu8.wrapping_add(carry as u8);
                for _ in 1..self.n_buffered {
                    self.out.push(fill);
                }
                self.buffered = lead as u8;
                self.n_buffered = 1;
            } else {
                self.buffered = lead as u8;
                self.n_buffered = 1;
            }
        }
        (low, bits_left)
    }
}

impl EncState {
    #[inline(always)]
    fn check_out(&mut self, out: &mut EncOut) {
        if self.bits_left < OUT_THRESHOLD {
            (self.low, self.bits_left) = out.write_out(self.low, self.bits_left);
        }
    }

    /// Codes one context-coded bin and adapts the model (spec §2.3), branch-free.
    #[inline(always)]
    pub(crate) fn encode_bin(&mut self, out: &mut EncOut, bin: u32, model: &mut ContextModel) {
        let r_lps = model.rlps(self.range);
        self.encode_split(out, bin != model.mps(), r_lps);
        model.update(bin);
    }

    /// Codes one bin whose LPS sub-range is `r_lps`, given whether it is the LPS.
    #[inline(always)]
    fn encode_split(&mut self, out: &mut EncOut, lps: bool, r_lps: u32) {
        let r_mps = self.range - r_lps;
        // An LPS skips the MPS sub-interval and keeps r_lps (>= 2, so at most 7 doublings bring
        // it to 256..=511); an MPS needs at most one doubling.
        self.low += if lps { r_mps as u64 } else { 0 };
        let range = if lps { r_lps } else { r_mps };
        let n = range.leading_zeros() - 23;
        self.range = range << n;
        self.low <<= n;
        self.bits_left -= n as i32;
        self.check_out(out);
    }

    /// Codes one context-coded bin given its model's `q = (p + 4096) >> 7` (0..=63) and whether
    /// the bin is the less probable value; the caller adapts its model.
    ///
    /// The model's eight `RLPS` entries (one per range octave) come in one word from
    /// [`RLPS_ROWS`], loaded off the range's dependency chain, so the range picks its entry
    /// with a shift instead of an index computation and a load.
    #[inline(always)]
    pub(crate) fn encode_with_q(&mut self, out: &mut EncOut, lps: bool, q: u32) {
        // Masked index: the fallback is dead code.
        let row = RLPS_ROWS.get(q as usize & 63).copied().unwrap_or(0);
        // `range` is 256..=510: `(range >> 5) << 3 = 64 + 8 ((range >> 5) & 7)`, and the shift
        // counts modulo 64.
        let r_lps = (row.wrapping_shr((self.range >> 2) & !7) & 0xFF) as u32;
        self.encode_split(out, lps, r_lps);
    }

    /// Codes the low `n` bits of `value` (n <= 32) as bypass bins, MSB first (spec §2.4).
    #[inline(always)]
    pub(crate) fn encode_bypass_bits(&mut self, out: &mut EncOut, value: u32, n: u32) {
        let mut left = n.min(32);
        while left > 0 {
            let k = left.min(8);
            left -= k;
            let chunk = (value >> left) & ((1u32 << k) - 1);
            self.low = (self.low << k) + self.range as u64 * chunk as u64;
            self.bits_left -= k as i32;
            self.check_out(out);
        }
    }
}

/// Arithmetic encoder. Bytes accumulate in memory; [`ArithEncoder::finish`] returns them.
#[derive(Clone, Debug)]
pub struct ArithEncoder {
    st: EncState,
    out: EncOut,
}

impl Default for ArithEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ArithEncoder {
    /// A fresh encoder (range 510, nothing written).
    pub fn new() -> Self {
        ArithEncoder {
            st: EncState {
                low: 0,
                range: 510,
                bits_left: 23,
            },
            out: EncOut::default(),
        }
    }

    /// The registers and the output, for loops that keep the registers in locals.
    #[inline(always)]
    pub(crate) fn parts(&mut self) -> (&mut EncState, &mut EncOut) {
        (&mut self.st, &mut self.out)
    }

    /// Counts `n` bins coded by a caller of [`ArithEncoder::parts`].
    #[inline(always)]
    pub(crate) fn add_bins(&mut self, n: u64) {
        self.out.bins += n;
    }

    /// Number of bins coded so far (regular, bypass and terminating).
    pub fn bins_coded(&self) -> u64 {
        self.out.bins
    }

    /// Bytes emitted so far (not counting those still held back for a carry or not yet moved
    /// out of the coder's registers).
    pub fn bytes_written(&self) -> usize {
        self.out.out.len()
    }

    /// Codes one context-coded bin and adapts the model.
    #[inline(always)]
    pub fn encode_bin(&mut self, bin: u32, model: &mut ContextModel) {
        self.out.bins += 1;
        self.st.encode_bin(&mut self.out, bin, model);
    }

    /// Codes one equiprobable bin.
    #[inline(always)]
    pub fn encode_bypass(&mut self, bin: u32) {
        self.encode_bypass_bits(bin & 1, 1);
    }

    /// Codes the low `n` bits of `value` (n <= 32) as bypass bins, MSB first.
    #[inline]
    pub fn encode_bypass_bits(&mut self, value: u32, n: u32) {
        self.out.bins += n.min(32) as u64;
        self.st.encode_bypass_bits(&mut self.out, value, n);
    }

    /// Codes the terminating bin.
    pub fn encode_terminate(&mut self, bin: bool) {
        self.out.bins += 1;
        let st = &mut self.st;
        st.range -= 2;
        if bin {
            st.low = (st.low + st.range as u64) << 7;
            st.range = 256;
            st.bits_left -= 7;
        } else if st.range >= 256 {
            return;
        } else {
            st.low <<= 1;
            st.range <<= 1;
            st.bits_left -= 1;
        }
        st.check_out(&mut self.out);
    }

    /// Codes the terminating bin 1, flushes and returns the stream.
    pub fn finish(mut self) -> Vec<u8> {
        self.encode_terminate(true);
        self.flush();
        self.out.out
    }

    fn flush(&mut self) {
        let (mut low, bits_left) = self.out.write_out(self.st.low, self.st.bits_left);
        let o = &mut self.out;
        if (low >> (32 - bits_left)) != 0 {
            o.out.push(o.buffered.wrapping_add(1));
            for _ in 1..o.n_buffered {
                o.out.push(0x00);
            }
            low -= 1u64 << (32 - bits_left);
        } else {
            if o.n_buffered > 0 {
                o.out.push(o.buffered);
            }
            for _ in 1..o.n_buffered {
                o.out.push(0xFF);
            }
        }
        let pending = (24 - bits_left) as u32;
        let bits = ((low >> 8) << 1) | 1;
        let total = pending + 1;
        let padded = total.div_ceil(8) * 8;
        let bits = bits << (padded - total);
        let mut k = padded;
        while k > 0 {
            k -= 8;
            o.out.push((bits >> k) as u8);
        }
    }
}

/// Bits of look-ahead kept below the spec's 16-bit `value` window (spec §2.7).
const WIN: u32 = 40;

/// The registers of the decoder, kept apart from the data so that a hot loop can hold them in
/// locals (see [`ArithDecoder::parts`]).
///
/// The spec's `value` register (§2.7) is kept shifted left by [`WIN`] bits, and up to `WIN` bits
/// of the following stream sit below it, so bytes are fetched several at a time. The comparison
/// `value < r << 7` only looks at whole multiples of 2^7, so the extra bits never change a bin.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DecState {
    /// Bytes loaded into `value` (may exceed the length: those bytes read as zero).
    pos: usize,
    /// The spec's `value << WIN`, then `avail` valid look-ahead bits, then a 1 (the sentinel)
    /// and zeros. The sentinel stands in for a bit counter: fewer than 8 look-ahead bits are
    /// left exactly when the low 32 bits are zero, and the hot loops keep one register less.
    value: u64,
    range: u32,
}

/// The sentinel's bit position is `SENTINEL_TOP - avail`.
const SENTINEL_TOP: u32 = WIN - 1;

/// Bytes `pos..pos + 8` of `data` as a big-endian word, zeros past the end.
#[inline(always)]
fn load_be(data: &[u8], pos: usize) -> u64 {
    // `pos` stays within a chunk's worth of bins of `data.len()`, so the addition cannot wrap
    // (and if it did, the empty range would take the slow path).
    match data.get(pos..pos.wrapping_add(8)).map(<[u8; 8]>::try_from) {
        Some(Ok(c)) => u64::from_be_bytes(c),
        _ => load_be_tail(data, pos),
    }
}

/// [`load_be`] near the end of the data: the bytes that exist, then zeros.
#[cold]
#[inline(never)]
fn load_be_tail(data: &[u8], pos: usize) -> u64 {
    let mut c = [0u8; 8];
    for (i, x) in c.iter_mut().enumerate() {
        *x = data.get(pos.wrapping_add(i)).copied().unwrap_or(0);
    }
    u64::from_be_bytes(c)
}

/// Loads whole bytes below the valid look-ahead bits (to between 32 and 39 of them) and moves
/// the sentinel below them; returns `(pos, value)`.
#[inline(always)]
fn refill(data: &[u8], pos: usize, value: u64) -> (usize, u64) {
    let avail = SENTINEL_TOP - value.trailing_zeros().min(SENTINEL_TOP);
    let bits = (SENTINEL_TOP - avail) & !7;
    let chunk = load_be(data, pos);
    // The sentinel sits at `SENTINEL_TOP - avail`; the new bits start just above where it goes.
    let value = value & value.wrapping_sub(1); // clears the sentinel (its lowest set bit)
    let value = value | (chunk >> (64 - bits)) << (WIN - avail - bits);
    let value = value | 1u64 << (SENTINEL_TOP - avail - bits);
    (pos + (bits / 8) as usize, value)
}

impl DecState {
    /// The state after the first two bytes, `first`, have been read (spec §2.7).
    fn start(data: &[u8], first: u64) -> Self {
        let (pos, value) = refill(data, 2, first << WIN | 1 << SENTINEL_TOP);
        DecState {
            pos,
            value,
            range: 510,
        }
    }

    /// Valid look-ahead bits below the spec value.
    #[inline(always)]
    fn avail(&self) -> u32 {
        SENTINEL_TOP - self.value.trailing_zeros().min(SENTINEL_TOP)
    }

    /// Makes at least 8 look-ahead bits available (a regular bin shifts by at most 7).
    #[inline(always)]
    fn ensure(&mut self, data: &[u8]) {
        if self.value as u32 == 0 {
            (self.pos, self.value) = refill(data, self.pos, self.value);
        }
    }

    /// The spec decoder's `pos`: bytes it would have read so far.
    #[inline(always)]
    pub(crate) fn spec_pos(&self) -> usize {
        self.pos - self.avail().div_ceil(8) as usize
    }

    /// Whether the spec decoder would have read past the end of `data` by now.
    #[inline(always)]
    pub(crate) fn overrun(&self, data: &[u8]) -> bool {
        self.pos > data.len() && self.spec_pos() > data.len()
    }

    /// Decodes one context-coded bin and adapts the model (spec §2.8).
    #[inline(always)]
    pub(crate) fn decode_bin(&mut self, data: &[u8], model: &mut ContextModel) -> u32 {
        self.ensure(data);
        let r_lps = model.rlps(self.range);
        let r_mps = self.range - r_lps;
        let scaled = (r_mps as u64) << (7 + WIN);
        let lps = self.value >= scaled;
        let bin = model.mps() ^ lps as u32;
        self.value -= if lps { scaled } else { 0 };
        let range = if lps { r_lps } else { r_mps };
        let n = range.leading_zeros() - 23;
        self.range = range << n;
        self.value <<= n;
        model.update(bin);
        bin
    }

    /// [`DecState::decode_bin`] with a branch on the outcome: faster for bins whose value is
    /// predictable (the greater-than run and the remainder prefix), where the branch-free form
    /// would put the renormalisation on every bin's critical path.
    #[inline(always)]
    pub(crate) fn decode_bin_predictable(&mut self, data: &[u8], model: &mut ContextModel) -> u32 {
        self.ensure(data);
        let r_lps = model.rlps(self.range);
        let r_mps = self.range - r_lps;
        let scaled = (r_mps as u64) << (7 + WIN);
        let bin;
        if self.value < scaled {
            bin = model.mps();
            let n = (r_mps < 256) as u32;
            self.range = r_mps << n;
            self.value <<= n;
        } else {
            bin = model.mps() ^ 1;
            let n = r_lps.leading_zeros() - 23;
            self.range = r_lps << n;
            self.value = (self.value - scaled) << n;
        }
        model.update(bin);
        bin
    }

    /// Decodes `n` (<= 32) bypass bins, MSB first (spec §2.9), in one step.
    ///
    /// `n` bypass bins are `n` steps of restoring binary division of the value window by
    /// `range << 7`: together they are the quotient `t / range` of the window's top
    /// `n + 16 - 7` bits `t` (the spec value followed by the next `n` stream bits, without its
    /// low 7 bits), and the new spec value is the remainder followed by the rest. The quotient
    /// comes from a multiplication by `ceil(2^64 / range)`: with `t < 2^41` the rounding error
    /// is below `2^-23`, less than the `1 / range` gap to the next integer, so it is exact.
    #[inline(always)]
    pub(crate) fn decode_bypass_bits(&mut self, data: &[u8], n: u32) -> u32 {
        let n = n.min(32);
        if self.avail() < n {
            // A refill leaves at least 32 bits.
            (self.pos, self.value) = refill(data, self.pos, self.value);
        }
        let r = self.range;
        // The value is below `range << 47` < 2^56, so `t` < range * 2^n <= 2^41.
        let t = self.value >> (7 + WIN - n);
        let inv = RECIP.get((r & 511) as usize).copied().unwrap_or(0);
        let q = ((t as u128 * inv as u128) >> 64) as u64;
        let rem = t - q * r as u64;
        // The bits below the `t` window, moved up by `n` (bits shifted out are those of `t`).
        let low_mask = (1u64 << (7 + WIN)) - 1;
        self.value = (rem << (7 + WIN)) | ((self.value << n) & low_mask);
        q as u32
    }
}

/// A context model the bin decoders can use: the level decoder is generic over the layout, so
/// the public single-level API keeps [`ContextModel`] while layers use [`DecModel`].
pub(crate) trait BinModel {
    /// Decodes one bin whose value is hard to predict, without branching on it.
    fn decode(&mut self, st: &mut DecState, data: &[u8]) -> u32;
    /// Decodes one bin whose value is usually the same (see
    /// [`DecState::decode_bin_predictable`]).
    fn decode_predictable(&mut self, st: &mut DecState, data: &[u8]) -> u32;
}

impl BinModel for ContextModel {
    #[inline(always)]
    fn decode(&mut self, st: &mut DecState, data: &[u8]) -> u32 {
        st.decode_bin(data, self)
    }
    #[inline(always)]
    fn decode_predictable(&mut self, st: &mut DecState, data: &[u8]) -> u32 {
        st.decode_bin_predictable(data, self)
    }
}

impl BinModel for DecModel {
    #[inline(always)]
    fn decode(&mut self, st: &mut DecState, data: &[u8]) -> u32 {
        let bin = st.decide(data, self);
        self.update(bin);
        bin
    }

    #[inline(always)]
    fn decode_predictable(&mut self, st: &mut DecState, data: &[u8]) -> u32 {
        st.ensure(data);
        let (r_mps, n) = self.mps_step(st.range);
        // `value < r_mps << 7` (spec §2.8), both sides doubled `n` times.
        let shifted = st.value << n;
        if shifted < (r_mps as u64) << (7 + WIN) {
            st.range = r_mps;
            st.value = shifted;
            if !self.fixed() {
                self.update(self.mps());
            }
            self.mps()
        } else {
            let r_mps = r_mps >> n;
            let r_lps = st.range - r_mps;
            let n = r_lps.leading_zeros() - 23;
            st.range = r_lps << n;
            st.value = (st.value - ((r_mps as u64) << (7 + WIN))) << n;
            let bin = self.mps() ^ 1;
            self.update(bin);
            bin
        }
    }
}

impl DecState {
    /// Decodes one bin on `model` without adapting it (the caller does, see
    /// [`DecModel::next`]), branch-free.
    #[inline(always)]
    pub(crate) fn decide(&mut self, data: &[u8], model: &DecModel) -> u32 {
        self.ensure(data);
        let r_lps = model.rlps(self.range);
        let r_mps = self.range - r_lps;
        let scaled = (r_mps as u64) << (7 + WIN);
        // Both renormalisations are worked out before the comparison, so that only selects
        // follow it on the path to the next bin.
        let n_mps = (r_mps < 256) as u32;
        let n_lps = r_lps.leading_zeros() - 23;
        let lps = self.value >= scaled;
        let (range, n, sub) = if lps {
            (r_lps << n_lps, n_lps, scaled)
        } else {
            (r_mps << n_mps, n_mps, 0)
        };
        self.range = range;
        self.value = (self.value - sub) << n;
        model.mps() ^ lps as u32
    }
}

/// `ceil(2^64 / range)` for ranges 256..=511 (entries below 256 unused): the reciprocals that
/// turn the bypass division into a multiplication.
// Evaluated at compile time: an index out of range would fail the build.
#[allow(clippy::indexing_slicing)]
static RECIP: [u64; 512] = {
    let mut t = [0u64; 512];
    let mut r = 256;
    while r < 512 {
        t[r] = (u64::MAX / r as u64) + 1;
        r += 1;
    }
    t
};

/// Arithmetic decoder over a borrowed byte slice.
///
/// Reading past the end of the data does not panic: missing bytes read as zeros, and every
/// public decoding step can check whether the spec's decoder would have read past the end, so a
/// truncated stream becomes [`Error::Truncated`] and decoding time stays bounded by the
/// caller's checks.
#[derive(Clone, Debug)]
pub struct ArithDecoder<B: AsRef<[u8]>> {
    data: B,
    st: DecState,
}

impl<B: AsRef<[u8]>> ArithDecoder<B> {
    /// Starts decoding `data` (spec §2.7). A stream is at least two bytes long.
    pub fn new(data: B) -> Result<Self> {
        let value = match data.as_ref() {
            [b0, b1, ..] => ((*b0 as u64) << 8) | *b1 as u64,
            _ => return Err(Error::Truncated),
        };
        let st = DecState::start(data.as_ref(), value);
        Ok(ArithDecoder { data, st })
    }

    /// The data and the registers, for loops that keep the registers in locals.
    #[inline(always)]
    pub(crate) fn parts(&mut self) -> (&[u8], &mut DecState) {
        (self.data.as_ref(), &mut self.st)
    }

    /// Errors if any bin so far needed bytes past the end of the data.
    #[inline(always)]
    pub fn check(&self) -> Result<()> {
        if self.st.overrun(self.data.as_ref()) {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.data.as_ref().len().saturating_sub(self.st.spec_pos())
    }

    /// Number of bytes read so far.
    pub fn position(&self) -> usize {
        self.st.spec_pos()
    }

    /// Decodes one context-coded bin and adapts the model.
    #[inline(always)]
    pub fn decode_bin(&mut self, model: &mut ContextModel) -> u32 {
        let (data, st) = self.parts();
        st.decode_bin(data, model)
    }

    /// Decodes one equiprobable bin.
    #[inline(always)]
    pub fn decode_bypass(&mut self) -> u32 {
        self.decode_bypass_bits(1)
    }

    /// Decodes `n` (<= 32) bypass bins, MSB first, as an unsigned value.
    #[inline]
    pub fn decode_bypass_bits(&mut self, n: u32) -> u32 {
        let (data, st) = self.parts();
        st.decode_bypass_bits(data, n)
    }

    /// Decodes the terminating bin.
    pub fn decode_terminate(&mut self) -> bool {
        let (data, st) = self.parts();
        st.ensure(data);
        st.range -= 2;
        if st.value >= (st.range as u64) << (7 + WIN) {
            true
        } else {
            if st.range < 256 {
                st.range <<= 1;
                st.value <<= 1;
            }
            false
        }
    }

    /// Decodes the stream's terminating bin, which must be 1, and returns the bytes consumed.
    pub fn finish(mut self) -> Result<usize> {
        let end = self.decode_terminate();
        self.check()?;
        if !end {
            return Err(Error::Corrupt("terminating bin not received"));
        }
        Ok(self.st.spec_pos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contexts::RLPS_BY_Q;

    #[test]
    fn rlps_rows_hold_the_table_by_range_octave() {
        for q in 0..64usize {
            for range in 256u32..=510 {
                let shift = (range >> 2) & !7;
                let got = (RLPS_ROWS[q].wrapping_shr(shift) & 0xFF) as u8;
                assert_eq!(
                    got,
                    RLPS_BY_Q[16 * q + (range >> 5) as usize],
                    "q {q} range {range}"
                );
            }
        }
    }

    #[test]
    fn coding_by_q_equals_coding_with_the_model() {
        // Same bins through encode_bin (the model's cached row) and encode_with_q (its q).
        let (mut a, mut b) = (ArithEncoder::new(), ArithEncoder::new());
        let (mut ma, mut mb) = (ContextModel::new(2), ContextModel::new(2));
        for i in 0..5000u32 {
            let bin = (i.wrapping_mul(2654435761) >> 29 & 3 == 0) as u32;
            a.encode_bin(bin, &mut ma);
            let q = ((mb.p() + 4096) >> 7) as u32;
            let (st, out) = b.parts();
            st.encode_with_q(out, bin != mb.mps(), q);
            mb.update(bin);
        }
        assert_eq!(a.finish(), b.finish());
    }

    /// The encoder of spec §2.2–2.6 written literally: one byte moved out per check.
    fn spec_encode(ops: &[(Option<usize>, u32, u32)], nctx: usize) -> Vec<u8> {
        let (mut low, mut range, mut bits_left) = (0u64, 510u32, 23i32);
        let (mut buffered, mut n_buffered, mut out) = (0u8, 0u64, Vec::new());
        let mut models = vec![ContextModel::new(0); nctx];
        let mut write_out = |low: &mut u64, bits_left: &mut i32| {
            if *bits_left < 12 {
                let lead = (*low >> (24 - *bits_left)) as u32;
                *bits_left += 8;
                *low &= 0xFFFF_FFFFu64 >> *bits_left;
                if lead == 0xFF {
                    n_buffered += 1;
                } else if n_buffered > 0 {
                    let carry = lead >> 8;
                    out.push(buffered.wrapping_add(carry as u8));
                    for _ in 1..n_buffered {
                        out.push(0xFFu8.wrapping_add(carry as u8));
                    }
                    buffered = lead as u8;
                    n_buffered = 1;
                } else {
                    buffered = lead as u8;
                    n_buffered = 1;
                }
            }
        };
        for &(ctx, v, n) in ops {
            match ctx {
                Some(c) => {
                    let m = &mut models[c];
                    let r_lps = m.rlps(range);
                    range -= r_lps;
                    if v == m.mps() {
                        if range < 256 {
                            range <<= 1;
                            low <<= 1;
                            bits_left -= 1;
                        }
                    } else {
                        low += range as u64;
                        range = r_lps;
                        while range < 256 {
                            range <<= 1;
                            low <<= 1;
                            bits_left -= 1;
                        }
                    }
                    write_out(&mut low, &mut bits_left);
                    m.update(v);
                }
                None => {
                    for i in (0..n).rev() {
                        low = (low << 1) + if (v >> i) & 1 != 0 { range as u64 } else { 0 };
                        bits_left -= 1;
                        write_out(&mut low, &mut bits_left);
                    }
                }
            }
        }
        range -= 2;
        low = (low + range as u64) << 7;
        bits_left -= 7;
        write_out(&mut low, &mut bits_left);
        if (low >> (32 - bits_left)) != 0 {
            out.push(buffered.wrapping_add(1));
            out.resize(out.len() + (n_buffered as usize).saturating_sub(1), 0);
            low -= 1u64 << (32 - bits_left);
        } else {
            if n_buffered > 0 {
                out.push(buffered);
                out.resize(out.len() + n_buffered as usize - 1, 0xFF);
            }
        }
        let total = (24 - bits_left) as u32 + 1;
        let padded = total.div_ceil(8) * 8;
        let bits = (((low >> 8) << 1) | 1) << (padded - total);
        let mut k = padded;
        while k > 0 {
            k -= 8;
            out.push((bits >> k) as u8);
        }
        out
    }

    fn op() -> impl proptest::strategy::Strategy<Value = (Option<usize>, u32, u32)> {
        use proptest::prelude::*;
        prop_oneof![
            // Skewed regular bins on a few contexts (long MPS runs, rare LPS).
            6 => (0usize..4, 0u32..16).prop_map(|(c, r)| (Some(c), (r == 0) as u32 ^ (c as u32 & 1), 1)),
            3 => (4usize..6, 0u32..2).prop_map(|(c, b)| (Some(c), b, 1)),
            1 => (1u32..=32).prop_flat_map(|n| (Just(None), 0..=(u32::MAX >> (32 - n)), Just(n))),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn wide_registers_match_the_literal_spec_coder(
            ops in proptest::collection::vec(op(), 0..3000),
        ) {
            let want = spec_encode(&ops, 6);
            let mut enc = ArithEncoder::new();
            let mut models = [ContextModel::new(0); 6];
            for &(ctx, v, n) in &ops {
                match ctx {
                    Some(c) => enc.encode_bin(v, &mut models[c]),
                    None => enc.encode_bypass_bits(v, n),
                }
            }
            let bytes = enc.finish();
            proptest::prop_assert_eq!(&bytes, &want);
            let mut dec = ArithDecoder::new(&bytes[..]).unwrap();
            let mut models = [ContextModel::new(0); 6];
            for &(ctx, v, n) in &ops {
                let got = match ctx {
                    Some(c) => dec.decode_bin(&mut models[c]),
                    None => dec.decode_bypass_bits(n),
                };
                proptest::prop_assert_eq!(got, v);
            }
            proptest::prop_assert!(dec.check().is_ok());
            proptest::prop_assert_eq!(dec.finish().unwrap(), bytes.len());
            // Any truncation is detected (or, for the last byte only, may still decode).
            let cut = bytes.len() / 2;
            if cut >= 2 && cut + 1 < bytes.len() {
                let mut dec = ArithDecoder::new(&bytes[..cut]).unwrap();
                let mut models = [ContextModel::new(0); 6];
                for &(ctx, _, n) in &ops {
                    match ctx {
                        Some(c) => dec.decode_bin(&mut models[c]),
                        None => dec.decode_bypass_bits(n),
                    };
                }
                proptest::prop_assert!(dec.finish().is_err());
            }
        }
    }

    #[test]
    fn empty_stream_is_terminate_and_flush_only() {
        let bytes = ArithEncoder::new().finish();
        let dec = ArithDecoder::new(&bytes[..]).unwrap();
        assert_eq!(dec.finish().unwrap(), bytes.len());
    }

    #[test]
    fn bins_round_trip_with_adaptation() {
        let bins: Vec<u32> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2654435761u32) >> 29 == 0) as u32)
            .collect();
        let mut enc = ArithEncoder::new();
        let mut m = ContextModel::new(0);
        for (i, &b) in bins.iter().enumerate() {
            enc.encode_bin(b, &mut m);
            if i % 17 == 0 {
                enc.encode_bypass(b ^ 1);
                enc.encode_bypass_bits(i as u32, 13);
            }
        }
        let bytes = enc.finish();
        // A skewed source costs well below one bit per regular bin (bypass bins cost one each).
        let bypass = bins.len().div_ceil(17) * 14;
        assert!(bytes.len() * 8 < bins.len() * 3 / 4 + bypass);
        let mut dec = ArithDecoder::new(&bytes[..]).unwrap();
        let mut m = ContextModel::new(0);
        for (i, &b) in bins.iter().enumerate() {
            assert_eq!(dec.decode_bin(&mut m), b);
            if i % 17 == 0 {
                assert_eq!(dec.decode_bypass(), b ^ 1);
                assert_eq!(dec.decode_bypass_bits(13), i as u32 & 0x1FFF);
            }
        }
        assert_eq!(dec.finish().unwrap(), bytes.len());
    }

    #[test]
    fn short_or_truncated_input_is_an_error() {
        assert_eq!(
            ArithDecoder::new(&[0x12u8][..]).unwrap_err(),
            Error::Truncated
        );
        let mut enc = ArithEncoder::new();
        enc.encode_bypass_bits(0xDEAD_BEEF, 32);
        enc.encode_bypass_bits(0x1234_5678, 32);
        let bytes = enc.finish();
        let mut dec = ArithDecoder::new(&bytes[..4]).unwrap();
        dec.decode_bypass_bits(32);
        dec.decode_bypass_bits(32);
        assert_eq!(dec.check(), Err(Error::Truncated));
    }
}
