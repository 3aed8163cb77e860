//! Adaptive probability models ("SBMP" contexts) and the context set of a layer (spec §3, §4).
//!
//! Every decoded bin looks these tables up with indices that follow the decoded data, so indexing
//! that could panic is denied here: lookups are masked into fixed-size tables.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use crate::tables::{CURVE, EST_BITS, INIT_SETS, RLPS};

/// Number of initialisation sets an encoder may signal per context.
pub const NUM_INIT_SETS: usize = 9;

/// Cost of one bypass bin in the coder's rate unit (1/32768 bit).
pub const BYPASS_COST: u32 = 32768;

/// A two-rate probability estimate: `p = 16a + b`, `p > 0` means a 1 is more likely.
///
/// The estimates are kept offset (`ia = a + 128`, `bo = b + 2048`, so `16 ia + bo = p + 4096`
/// is never negative) and the shifts as table row numbers, so that an update is a few adds and
/// two lookups. The model also caches what the coding engine needs per bin (the base of the
/// RLPS row of `p >> 7` and the MPS), refreshed by every update, so that the engine's critical
/// path is a single table lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextModel {
    /// `a + 128` (5..=251).
    ia: u8,
    /// `2 (shift_a - 4)`: with the bin, the row of [`NEXT_IA_FLAT`].
    ka: u8,
    /// `2 (shift_b - 4)`: with the bin, the row of [`DELTA_B_FLAT`].
    kb: u8,
    mps: u8,
    /// `b + 2048` (125..=3971).
    bo: u16,
    /// `((p + 4096) >> 7) << 4`: base of this estimate's row in [`RLPS_BY_Q`].
    col: u16,
}

/// `RLPS` by `q = (p + 4096) >> 7` (so `p >> 7 = q - 32`, column `|q - 32|`):
/// `[16 q + (range >> 5)]` for range 256..=511 (entries 8..15 of each row).
// Evaluated at compile time: an index out of range would fail the build.
#[allow(clippy::indexing_slicing)]
pub(crate) static RLPS_BY_Q: [u8; 1024] = {
    let mut t = [0u8; 1024];
    let mut q = 0;
    while q < 64 {
        let col = (q as i32 - 32).unsigned_abs() as usize & 31;
        let mut row = 0;
        while row < 8 {
            t[q * 16 + 8 + row] = RLPS[row * 32 + col] as u8;
            row += 1;
        }
        q += 1;
    }
    t
};

/// Next `a` estimate per `[shift_a - 4][bin][a + 128]` (spec §3.4).
// Evaluated at compile time: an index out of range would fail the build.
#[allow(clippy::indexing_slicing)]
pub(crate) static NEXT_A: [[[i16; 256]; 2]; 4] = {
    let mut t = [[[0i16; 256]; 2]; 4];
    let mut s = 0;
    while s < 4 {
        let mut a = -128i32;
        while a < 128 {
            let i = (a + 128) as usize;
            let up = a + (CURVE[(16 + (a >> 3)) as usize & 31] >> (s + 4));
            let dn = a - (CURVE[(16 + ((-a) >> 3)) as usize & 31] >> (s + 4));
            t[s][1][i] = up as i16;
            t[s][0][i] = dn as i16;
            a += 1;
        }
        s += 1;
    }
    t
};

/// Change of the `b` estimate per `[shift_b - 4][bin][j]`, `j = ((b - 1 + bin) >> 7) + 16`.
///
/// For bin 1 the spec's index is `16 + (b >> 7) = j`. For bin 0 it is `16 + ((-b) >> 7)`, and
/// `(-b) >> 7 = !((b - 1) >> 7) = 15 - j`, so the index is `31 - j`.
// Evaluated at compile time: an index out of range would fail the build.
#[allow(clippy::indexing_slicing)]
pub(crate) static DELTA_B: [[[i16; 32]; 2]; 4] = {
    let mut t = [[[0i16; 32]; 2]; 4];
    let mut s = 0;
    while s < 4 {
        let mut j = 0;
        while j < 32 {
            t[s][1][j] = (CURVE[j] >> (s + 4)) as i16;
            t[s][0][j] = -(CURVE[31 - j] >> (s + 4)) as i16;
            j += 1;
        }
        s += 1;
    }
    t
};

/// [`NEXT_A`] offset by 128, flattened: `[(2 (shift_a - 4) + bin) * 256 + a + 128]`.
// Evaluated at compile time: an index out of range would fail the build.
#[allow(clippy::indexing_slicing)]
static NEXT_IA_FLAT: [u8; 2048] = {
    let mut t = [0u8; 2048];
    let mut i = 0;
    while i < 2048 {
        t[i] = (NEXT_A[i >> 9][(i >> 8) & 1][i & 255] + 128) as u8;
        i += 1;
    }
    t
};

/// [`DELTA_B`] flattened: `[(2 (shift_b - 4) + bin) * 32 + j]`.
// Evaluated at compile time: an index out of range would fail the build.
#[allow(clippy::indexing_slicing)]
static DELTA_B_FLAT: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = DELTA_B[i >> 6][(i >> 5) & 1][i & 31];
        i += 1;
    }
    t
};

/// The set that out-of-range set numbers saturate to.
const LAST_INIT_SET: (u8, u8, i16, i16) = {
    let [.., last] = INIT_SETS;
    last
};

impl Default for ContextModel {
    fn default() -> Self {
        Self::new(0)
    }
}

impl ContextModel {
    /// A model in initialisation set `set` (0..=8). Out-of-range sets saturate to 8.
    #[inline]
    pub fn new(set: usize) -> Self {
        let (sh0, sh1, p, a) = INIT_SETS.get(set).copied().unwrap_or(LAST_INIT_SET);
        Self::from_state(a, p - 16 * a, sh0 | (sh1 - 4) << 2)
    }

    /// The model with estimates `a`, `b` and shifts `(shift_a - 4) | (shift_b - 4) << 2`.
    #[inline(always)]
    fn from_state(a: i16, b: i16, shifts: u8) -> Self {
        Self::from_offset(
            (a + 128) as u8,
            (b + 2048) as u16,
            (shifts & 3) << 1,
            ((shifts >> 2) & 3) << 1,
        )
    }

    #[inline(always)]
    fn from_offset(ia: u8, bo: u16, ka: u8, kb: u8) -> Self {
        let pp = 16 * ia as u32 + bo as u32; // p + 4096
        ContextModel {
            ia,
            ka,
            kb,
            mps: (pp >> 12) as u8 & 1,
            bo,
            col: ((pp >> 3) & 0x3F0) as u16,
        }
    }

    /// Fast estimate `a`.
    #[inline(always)]
    fn a(&self) -> i32 {
        self.ia as i32 - 128
    }

    /// Slow estimate `b`.
    #[inline(always)]
    fn b(&self) -> i32 {
        self.bo as i32 - 2048
    }

    /// Shift of the fast estimate `a`.
    #[inline(always)]
    pub fn shift_a(&self) -> u32 {
        (self.ka >> 1) as u32 + 4
    }

    /// Shift of the slow estimate `b`.
    #[inline(always)]
    pub fn shift_b(&self) -> u32 {
        (self.kb >> 1) as u32 + 4
    }

    /// Combined estimate `16a + b`.
    #[inline(always)]
    pub fn p(&self) -> i32 {
        16 * self.a() + self.b()
    }

    /// The more probable bin value.
    #[inline(always)]
    pub fn mps(&self) -> u32 {
        self.mps as u32
    }

    /// LPS sub-range for the coder's current range (256..=510).
    #[inline(always)]
    pub fn rlps(&self, range: u32) -> u32 {
        // `p >> 7` floors, so the table column is asymmetric around 0 (spec §3.3 quirk).
        // The mask keeps the index inside the table, so the fallback is dead code (compiled out).
        let i = (self.col as usize + (range >> 5) as usize) & 1023;
        RLPS_BY_Q.get(i).map_or(0, |&r| r as u32)
    }

    /// Estimated cost of coding `bin` in this state, in 1/32768 bit.
    #[inline(always)]
    pub fn est_bits(&self, bin: u32) -> u32 {
        // `512 + (p >> 3) = (p + 4096) >> 3`. Masked indices: the fallback is dead code.
        let i = ((16 * self.ia as usize + self.bo as usize) >> 3) & 1023;
        EST_BITS
            .get(i)
            .and_then(|e| e.get((bin & 1) as usize))
            .copied()
            .unwrap_or(0)
    }

    /// Moves both estimates towards the coded bin.
    #[inline(always)]
    pub fn update(&mut self, bin: u32) {
        let bin = bin & 1;
        // Every index is masked to its table's size, so the fallbacks are dead code.
        let ia_idx = ((((self.ka as u32) | bin) << 8) | self.ia as u32) as usize & 2047;
        let ia = NEXT_IA_FLAT.get(ia_idx).copied().unwrap_or(self.ia);
        // `16 + ((b - 1 + bin) >> 7) = (bo - 1 + bin) >> 7`, see [`DELTA_B`].
        let j = ((self.bo as u32 + bin).wrapping_sub(1) >> 7) & 31;
        let db_idx = (((self.kb as u32 | bin) << 5) | j) as usize & 255;
        let db = DELTA_B_FLAT.get(db_idx).copied().unwrap_or(0);
        let bo = self.bo.wrapping_add(db as u16);
        *self = Self::from_offset(ia, bo, self.ka, self.kb);
    }
}

/// A context model laid out for the decoder's bin loop.
///
/// Decoding large levels is bound by the instructions per bin, and runs of zeros by the chain
/// from one bin to the next on the same context. So every part of the state is kept as the
/// index of the table that moves it on: `a` and `b` with their adaptation shifts index their
/// own transition tables ([`NEXT_A_STATE`], [`NEXT_B_STATE`]), and the estimate's RLPS column
/// indexes [`MPS_RANGE`], which gives the renormalised range after an MPS in one lookup. `row`
/// holds the eight LPS sub-ranges of the estimate, so the branch-free decoder takes its
/// sub-range from a register. And a model that an MPS leaves unchanged says so (`fixed`):
/// a context that has seen a long run of one value sits at that fixed point (spec §3.4: the
/// step `CURVE[31] >> shift` is 0), as the greater-than flags of large levels do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DecModel {
    /// `RLPS[k][col]` in byte `k`, for range class `k = (range >> 5) & 7`.
    row: u64,
    /// `(shift_a - 4) << 8 | (a + 128)`, and the [`FIXED_0`] / [`FIXED_1`] flags of `a`.
    a_state: u16,
    /// `(shift_b - 4) << 12 | (b + 2048)`, and the [`FIXED_0`] / [`FIXED_1`] flags of `b`.
    b_state: u16,
    /// `q << 8`, `q = (p + 4096) >> 7`: this estimate's block of [`MPS_RANGE`].
    q_off: u16,
    mps: u8,
    /// 1 when an MPS leaves the model unchanged.
    fixed: u8,
}

/// Flag of a transition-table entry: a 0 leaves this estimate unchanged.
const FIXED_0: u16 = 1 << 14;
/// Flag of a transition-table entry: a 1 leaves this estimate unchanged.
const FIXED_1: u16 = 1 << 15;

/// Next `a + 128` for one `(shift_a - 4, bin, a + 128)`.
// Every index is masked to its dimension (4, 2, 256), so none can be out of range; a `const fn`
// (it builds the tables) cannot use `get`.
#[allow(clippy::indexing_slicing)]
const fn next_ia(s: usize, bin: usize, ia: usize) -> usize {
    (NEXT_A[s & 3][bin & 1][ia & 255] + 128) as usize
}

/// Next `a_state` per `[bin << 10 | a_state]` (spec §3.4), with the flags of the next state.
// Evaluated at compile time: an index out of range would fail the build.
#[allow(clippy::indexing_slicing)]
static NEXT_A_STATE: [u16; 2048] = {
    let mut t = [0u16; 2048];
    let mut i = 0;
    while i < 2048 {
        let (bin, s, ia) = (i >> 10, (i >> 8) & 3, i & 255);
        let n = next_ia(s, bin, ia);
        let mut e = ((s << 8) | n) as u16;
        if next_ia(s, 0, n) == n {
            e |= FIXED_0;
        }
        if next_ia(s, 1, n) == n {
            e |= FIXED_1;
        }
        t[i] = e;
        i += 1;
    }
    t
};

/// Next `b + 2048` for one `(shift_b - 4, bin, b + 2048)`, wrapped to 12 bits.
// Every index is masked to its dimension (4, 2, 32), so none can be out of range; a `const fn`
// (it builds the tables) cannot use `get`.
#[allow(clippy::indexing_slicing)]
const fn next_bo(s: usize, bin: usize, bo: usize) -> usize {
    // `16 + ((b - 1 + bin) >> 7) = (bo - 1 + bin) >> 7`, see [`DELTA_B`].
    let j = ((bo + bin) as i32 - 1) >> 7;
    let d = if j < 0 {
        0
    } else {
        DELTA_B[s & 3][bin & 1][j as usize & 31] as i32
    };
    ((bo as i32 + d) & 0xFFF) as usize
}

/// Next `b_state` per `[bin << 14 | b_state]` (spec §3.4), with the flags of the next state.
/// Entries for `b` outside the range an estimate can reach (|b| <= 1923) are computed the same
/// way and never used.
// Evaluated at compile time: an index out of range would fail the build.
#[allow(clippy::indexing_slicing)]
static NEXT_B_STATE: [u16; 32768] = {
    let mut t = [0u16; 32768];
    let mut i = 0;
    while i < 32768 {
        let (bin, s, bo) = (i >> 14, (i >> 12) & 3, i & 4095);
        let n = next_bo(s, bin, bo);
        let mut e = ((s << 12) | n) as u16;
        if next_bo(s, 0, n) == n {
            e |= FIXED_0;
        }
        if next_bo(s, 1, n) == n {
            e |= FIXED_1;
        }
        t[i] = e;
        i += 1;
    }
    t
};

/// Entries of [`MPS_RANGE`] and [`MPS_SHIFT`]: 64 blocks of 256 ranges, after 256 unused
/// entries, so that `q << 8 | (range - 256)` is `(q << 8) + range - 256` and a block can be
/// sliced at `q << 8` and indexed by the range itself (see [`DecModel::mps_step`]).
const MPS_LEN: usize = 256 + 64 * 256;

/// The MPS sub-range for `[(q << 8) + range]`, renormalised.
// Evaluated at compile time: an index out of range would fail the build.
#[allow(clippy::indexing_slicing)]
static MPS_RANGE: [u16; MPS_LEN] = {
    let mut t = [0u16; MPS_LEN];
    let mut i = 256;
    while i < MPS_LEN {
        let r_mps = mps_sub_range(i);
        t[i] = if r_mps < 256 { r_mps << 1 } else { r_mps } as u16;
        i += 1;
    }
    t
};

/// The doublings (0 or 1: the MPS sub-range is at least half the range) of that
/// renormalisation.
// Evaluated at compile time: an index out of range would fail the build.
#[allow(clippy::indexing_slicing)]
static MPS_SHIFT: [u8; MPS_LEN] = {
    let mut t = [0u8; MPS_LEN];
    let mut i = 256;
    while i < MPS_LEN {
        t[i] = (mps_sub_range(i) < 256) as u8;
        i += 1;
    }
    t
};

/// The MPS sub-range at entry `i = (q << 8) + range` of the tables above.
// Evaluated at compile time: an index out of range would fail the build.
#[allow(clippy::indexing_slicing)]
const fn mps_sub_range(i: usize) -> usize {
    let (q, range) = ((i - 256) >> 8, 256 + (i & 255));
    range - RLPS_BY_Q[q * 16 + (range >> 5)] as usize
}

/// Rows of `RLPS` by `q = (p + 4096) >> 7`, one byte per range class `k = (range >> 5) & 7`
/// (ranges `256 + 32 k..=287 + 32 k`): a model's LPS sub-range is then a shift of one word,
/// for the decoder's [`DecModel`] and the encoder's replay alike.
// Evaluated at compile time: an index out of range would fail the build.
#[allow(clippy::indexing_slicing)]
pub(crate) static RLPS_ROWS: [u64; 64] = {
    let mut t = [0u64; 64];
    let mut q = 0;
    while q < 64 {
        let mut k = 0;
        while k < 8 {
            t[q] |= (RLPS_BY_Q[q * 16 + 8 + k] as u64) << (8 * k);
            k += 1;
        }
        q += 1;
    }
    t
};

impl DecModel {
    /// The model of two transition-table entries (flags included).
    #[inline(always)]
    fn from_states(a_state: u32, b_state: u32) -> Self {
        let pp = ((a_state & 255) << 4) + (b_state & 4095); // p + 4096
        let mps = (pp >> 12) & 1;
        let q = (pp >> 7) & 63;
        // Bit 14 + mps of both entries: the flag of the MPS.
        let fixed = ((a_state & b_state) >> (14 + mps)) & 1;
        DecModel {
            row: RLPS_ROWS.get(q as usize).copied().unwrap_or(0),
            a_state: a_state as u16,
            b_state: b_state as u16,
            q_off: (q << 8) as u16,
            mps: mps as u8,
            fixed: fixed as u8,
        }
    }

    /// The MPS sub-range for the coder's current range (256..=510), renormalised, and the
    /// number of doublings that took (0 or 1).
    ///
    /// The blocks are sliced at `q_off` before the range is known, so on the path from one
    /// range to the next there are only the two loads.
    #[inline(always)]
    pub(crate) fn mps_step(&self, range: u32) -> (u32, u32) {
        let q = self.q_off as usize;
        // The fallbacks are dead code: `q_off + 512 <= MPS_LEN` and `range < 512`.
        let r = MPS_RANGE
            .get(q..q + 512)
            .and_then(|b| b.get(range as usize));
        let n = MPS_SHIFT
            .get(q..q + 512)
            .and_then(|b| b.get(range as usize));
        (
            r.copied().unwrap_or(256) as u32,
            n.copied().unwrap_or(0) as u32,
        )
    }

    /// LPS sub-range for the coder's current range (256..=510).
    #[inline(always)]
    pub(crate) fn rlps(&self, range: u32) -> u32 {
        (self.row >> ((range >> 2) & 0x38)) as u8 as u32
    }

    /// The more probable bin value.
    #[inline(always)]
    pub(crate) fn mps(&self) -> u32 {
        self.mps as u32
    }

    /// Whether an MPS leaves the model unchanged.
    #[inline(always)]
    pub(crate) fn fixed(&self) -> bool {
        self.fixed != 0
    }

    /// The model after `bin` (spec §3.4, as [`ContextModel::update`]). Independent of the
    /// coder's registers, so a loop can compute the likely successor while the bin is decoded.
    #[inline(always)]
    pub(crate) fn next(&self, bin: u32) -> Self {
        let bin = bin & 1;
        // Masked indices: the fallbacks are dead code.
        let ia = ((bin << 10) | (self.a_state as u32 & 1023)) as usize;
        let ib = ((bin << 14) | (self.b_state as u32 & 16383)) as usize;
        Self::from_states(
            NEXT_A_STATE.get(ia).copied().unwrap_or(0) as u32,
            NEXT_B_STATE.get(ib).copied().unwrap_or(0) as u32,
        )
    }

    /// The model after `bin`.
    #[inline(always)]
    pub(crate) fn update(&mut self, bin: u32) {
        *self = self.next(bin);
    }
}

impl From<ContextModel> for DecModel {
    fn from(m: ContextModel) -> Self {
        let (s_a, s_b) = ((m.ka >> 1) as usize, (m.kb >> 1) as usize);
        let (ia, bo) = (m.ia as usize, m.bo as usize);
        let flags = |fixed0: bool, fixed1: bool| {
            (if fixed0 { FIXED_0 } else { 0 }) | (if fixed1 { FIXED_1 } else { 0 })
        };
        let a =
            (s_a << 8 | ia) as u16 | flags(next_ia(s_a, 0, ia) == ia, next_ia(s_a, 1, ia) == ia);
        let b =
            (s_b << 12 | bo) as u16 | flags(next_bo(s_b, 0, bo) == bo, next_bo(s_b, 1, bo) == bo);
        Self::from_states(a as u32, b as u32)
    }
}

/// Largest number of greater-than flags accepted. The format allows more, but every context
/// costs memory per coder and nothing is gained past a few dozen flags.
pub const MAX_GTX_FLAGS: u32 = 4096;

/// Context indices of one layer for a given number of greater-than flags `G` (spec §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextLayout {
    /// Number of greater-than flags (`G`).
    pub num_gtx: u32,
}

impl ContextLayout {
    /// Layout for `num_gtx` greater-than flags (the rate model also uses `G = 0`).
    #[inline]
    pub const fn new(num_gtx: u32) -> Self {
        ContextLayout { num_gtx }
    }
    /// Number of contexts of a layer: `90 + 4G`.
    #[inline]
    pub const fn len(&self) -> usize {
        90 + 4 * self.num_gtx as usize
    }
    /// Never empty; present for API symmetry with `len`.
    #[inline]
    pub const fn is_empty(&self) -> bool {
        false
    }
    /// Significance flag in trellis state `state` after a neighbour of class `nb`.
    #[inline(always)]
    pub const fn sig(&self, state: u32, nb: u32) -> usize {
        (3 * state + nb) as usize
    }
    /// Sign flag after a neighbour of class `nb`.
    #[inline(always)]
    pub const fn sign(&self, nb: u32) -> usize {
        48 + nb as usize
    }
    /// Greater-than flag `k` of a level with the given sign.
    #[inline(always)]
    pub const fn gtx(&self, k: u32, negative: bool) -> usize {
        53 + 2 * k as usize + negative as usize
    }
    /// Exp-Golomb prefix bin `j` of the remainder.
    #[inline(always)]
    pub const fn prefix(&self, j: u32) -> usize {
        53 + 4 * self.num_gtx as usize + j as usize
    }
    /// Context of the flags that signal initialisation sets.
    #[inline(always)]
    pub const fn init_flag(&self) -> usize {
        87 + 4 * self.num_gtx as usize
    }

    /// Contexts whose initialisation set is signalled, in signalling order (spec §7.2).
    pub fn signalled(&self, dq_flag: bool) -> impl Iterator<Item = usize> {
        let nsig = if dq_flag { 24 } else { 3 };
        let g = self.num_gtx as usize;
        (0..nsig)
            .chain(48..51)
            .chain(53..53 + 2 * g)
            .chain(53 + 4 * g..53 + 4 * g + 31)
    }
}

/// Neighbour class of the previous level: 0 for zero, 1 for negative, 2 for positive.
#[inline(always)]
pub const fn neighbour_class(prev: i64) -> u32 {
    if prev == 0 {
        0
    } else if prev < 0 {
        1
    } else {
        2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_sets_follow_the_table() {
        let m = ContextModel::new(1);
        assert_eq!(m.p(), -1310);
        assert_eq!((m.shift_a(), m.shift_b()), (5, 4));
        assert_eq!(m.b(), -654);
        assert_eq!(m.mps(), 0);
        assert_eq!(ContextModel::new(0).mps(), 1);
    }

    #[test]
    fn out_of_range_init_sets_saturate_to_the_last() {
        let last = ContextModel::new(NUM_INIT_SETS - 1);
        assert_ne!(last, ContextModel::new(NUM_INIT_SETS - 2));
        assert_eq!(ContextModel::new(NUM_INIT_SETS), last);
        assert_eq!(ContextModel::new(usize::MAX), last);
    }

    #[test]
    fn rlps_column_floors_negative_estimates() {
        let m = ContextModel::from_state(0, -1, 0); // p = -1 -> column 1 (asymmetric quirk)
        assert_eq!(m.rlps(256), RLPS[1] as u32);
        let m = ContextModel::from_state(0, 127, 0);
        assert_eq!(m.rlps(256), RLPS[0] as u32);
        assert_eq!(m.rlps(510), RLPS[7 * 32] as u32);
    }

    #[test]
    fn estimates_stay_in_bounds_for_every_set_and_bin_sequence() {
        // Exhaustive over long runs of one value, then alternations: |a| <= 123, |b| <= 1923.
        for set in 0..NUM_INIT_SETS {
            for pattern in [0u32, 1, 2] {
                let mut m = ContextModel::new(set);
                for i in 0..5000u32 {
                    let bin = match pattern {
                        0 => 0,
                        1 => 1,
                        _ => (i / 7) & 1,
                    };
                    m.update(bin);
                    assert!(
                        m.a().abs() <= 123 && m.b().abs() <= 1923,
                        "{set} {pattern} {m:?}"
                    );
                    assert!((25..=998).contains(&(512 + (m.p() >> 3))));
                }
            }
        }
    }

    /// The update and RLPS lookup as spec §3.3/§3.4 write them.
    fn spec_update(a: i32, b: i32, sa: u32, sb: u32, bin: u32) -> (i32, i32) {
        let s = if bin == 1 { 1 } else { -1 };
        (
            a + s * (CURVE[(16 + ((s * a) >> 3)) as usize] >> sa),
            b + s * (CURVE[(16 + ((s * b) >> 7)) as usize] >> sb),
        )
    }

    #[test]
    fn cached_update_and_rlps_equal_the_spec_formulas_everywhere() {
        for shifts in 0..16u8 {
            let (sa, sb) = ((shifts & 3) as u32 + 4, (shifts >> 2) as u32 + 4);
            for a in -123i16..=123 {
                for b in (-1923i16..=1923).step_by(if a % 7 == 0 { 1 } else { 61 }) {
                    let m = ContextModel::from_state(a, b, shifts);
                    let p = 16 * a as i32 + b as i32;
                    assert_eq!(m.mps(), (p >= 0) as u32);
                    for range in [256u32, 287, 288, 300, 383, 384, 450, 479, 480, 510] {
                        let col = (p >> 7).unsigned_abs() as usize;
                        let want = RLPS[32 * ((range >> 5) & 7) as usize + col] as u32;
                        assert_eq!(m.rlps(range), want, "p {p} range {range}");
                    }
                    for bin in 0..2 {
                        let mut u = m;
                        u.update(bin);
                        let (wa, wb) = spec_update(a as i32, b as i32, sa, sb, bin);
                        assert_eq!((u.a(), u.b()), (wa, wb), "{m:?} {bin}");
                        assert_eq!(u, ContextModel::from_state(wa as i16, wb as i16, shifts));
                    }
                }
            }
        }
    }

    #[test]
    fn decoder_layout_follows_the_model_everywhere() {
        for shifts in 0..16u8 {
            for a in (-123i16..=123).step_by(3) {
                for b in (-1923i16..=1923).step_by(29) {
                    let m = ContextModel::from_state(a, b, shifts);
                    let d = DecModel::from(m);
                    assert_eq!(d.mps(), m.mps());
                    for range in [256u32, 287, 288, 300, 383, 384, 450, 479, 480, 510] {
                        assert_eq!(d.rlps(range), m.rlps(range), "{m:?} range {range}");
                    }
                    for range in 256u32..=510 {
                        let (r, n) = d.mps_step(range);
                        let r_mps = range - m.rlps(range);
                        assert_eq!((r >> n, n), (r_mps, (r_mps < 256) as u32), "{range}");
                        assert!((256..512).contains(&r));
                    }
                    let mut after_mps = m;
                    after_mps.update(m.mps());
                    assert_eq!(d.fixed(), after_mps == m, "{m:?}");
                    for bin in 0..2 {
                        let mut u = m;
                        u.update(bin);
                        assert_eq!(d.next(bin), DecModel::from(u), "{m:?} bin {bin}");
                        let mut v = d;
                        v.update(bin);
                        assert_eq!(v, d.next(bin));
                    }
                }
            }
        }
    }

    #[test]
    fn updates_move_towards_the_coded_bin() {
        let mut m = ContextModel::new(0);
        let before = m.p();
        m.update(1);
        assert!(m.p() > before);
        let mid = m.p();
        m.update(0);
        assert!(m.p() < mid);
    }

    #[test]
    fn estimated_cost_is_cheaper_for_the_likely_bin() {
        let m = ContextModel::new(2); // strongly biased to 1
        assert!(m.est_bits(1) < m.est_bits(0));
        assert_eq!(ContextModel::new(0).est_bits(0), EST_BITS[512][0]);
    }

    #[test]
    fn layout_matches_the_spec_example() {
        let l = ContextLayout::new(11);
        assert_eq!(l.len(), 134);
        assert_eq!(l.gtx(0, true), 54);
        assert_eq!(l.gtx(10, true), 74);
        assert_eq!(l.prefix(0), 97);
        assert_eq!(l.init_flag(), 131);
        assert_eq!(l.signalled(false).count(), 59);
        assert_eq!(l.signalled(true).count(), 80);
    }
}
