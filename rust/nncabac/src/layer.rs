//! The payload of one tensor ("layer"): header flags, signalled initialisation sets and the
//! levels in scan order 0 (spec §6–§8).
//!
//! The decoder reads hostile bytes, so indexing that could panic is denied in this module:
//! contexts and table entries are fetched with `get`, and an index out of range is an error
//! (or, for tables indexed by masked values, cannot happen and costs nothing).
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use crate::binarization::{binarize, binarize_gtx_from, decode_nonzero, model, BinSink};
use crate::contexts::NUM_INIT_SETS;
use crate::contexts::{neighbour_class, ContextLayout, ContextModel, DecModel, MAX_GTX_FLAGS};
use crate::contexts::{DELTA_B, NEXT_A};
use crate::engine::BinModel;
use crate::engine::{ArithDecoder, ArithEncoder, DecState, EncOut, EncState};
use crate::error::{Error, Result};
use crate::tables::{EST_BITS, INIT_SETS, STATE_TRANS};

/// Parameters a decoder must be told out of band (in NNC they come from the NDU header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerParams {
    /// 8-state dependent quantization: levels are reconstruction indices.
    pub dq_flag: bool,
    /// Number of greater-than flags `G` (NNCodec: `cabac_unary_length_minus1 + 1`, default 11).
    pub num_gtx_flags: u32,
    /// 0 or 1; with 1, tensors of at least two rows and columns carry header flags.
    pub general_profile_idc: u8,
    /// Adds the (always off) history-dependent-significance flag to those header flags.
    pub parent_node_id_present_flag: bool,
    /// Only scan order 0 (row-major, no entry points) is supported.
    pub scan_order: u32,
}

impl Default for LayerParams {
    /// NNCodec's defaults: dependent quantization, 11 greater-than flags, profile 1.
    fn default() -> Self {
        LayerParams {
            dq_flag: true,
            num_gtx_flags: 11,
            general_profile_idc: 1,
            parent_node_id_present_flag: false,
            scan_order: 0,
        }
    }
}

impl LayerParams {
    /// Rejects parameters the format or this implementation cannot code.
    pub fn validate(&self) -> Result<()> {
        if self.num_gtx_flags == 0 || self.num_gtx_flags > MAX_GTX_FLAGS {
            return Err(Error::InvalidParameter(format!(
                "num_gtx_flags must be in 1..={MAX_GTX_FLAGS}, got {}",
                self.num_gtx_flags
            )));
        }
        check_profile_and_scan(self.general_profile_idc, self.scan_order)
    }

    fn layout(&self) -> ContextLayout {
        ContextLayout::new(self.num_gtx_flags)
    }
}

/// The checks shared by coding and quantization parameters: profile 0 or 1, scan order 0.
pub(crate) fn check_profile_and_scan(general_profile_idc: u8, scan_order: u32) -> Result<()> {
    if general_profile_idc > 1 {
        return Err(Error::InvalidParameter(format!(
            "general_profile_idc must be 0 or 1, got {general_profile_idc}"
        )));
    }
    if scan_order != 0 {
        return Err(Error::InvalidParameter(format!(
            "only scan_order 0 is supported, got {scan_order}"
        )));
    }
    Ok(())
}

/// Number of weights and `layer_width` (product of all but the first dimension) of a shape.
pub fn shape_info(shape: &[usize]) -> Result<(usize, usize)> {
    let overflow = || Error::InvalidParameter(format!("shape {shape:?} has too many elements"));
    let width = match shape.split_first() {
        None => 1,
        Some((_, rest)) => rest
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(overflow)?,
    };
    if width == 0 {
        return Err(Error::InvalidParameter(format!(
            "shape {shape:?}: a zero in a dimension other than the first is not codable (layer_width = 0)"
        )));
    }
    let n = shape
        .first()
        .map_or(Some(width), |&d0| d0.checked_mul(width))
        .ok_or_else(overflow)?;
    Ok((n, width))
}

/// Whether the layer carries the HDSP / row-skip header flags (spec §6.3 step 1).
fn has_header_flags(params: &LayerParams, n: usize, width: usize) -> bool {
    params.general_profile_idc == 1 && width > 1 && n > width
}

/// Coded level `L` of reconstruction index `r` in trellis state `state` (spec §6.2, unvalidated
/// like the reference: an index of the wrong parity maps to a neighbouring one).
#[inline(always)]
pub fn coded_level(r: i64, state: u32) -> i64 {
    let q = (state & 1) as i64;
    if r > 0 {
        (r + q) >> 1
    } else if r < 0 {
        (r - q) >> 1
    } else {
        0
    }
}

/// [`coded_level`] without a branch on the sign of `r`: `(r + q) >> 1` for r > 0, `(r - q) >> 1`
/// for r < 0 (an arithmetic shift, so not the mirror image), 0 for r = 0 (`q >> 1 = 0`).
///
/// For the trial pass, where the branch was mispredicted for about every other level of a
/// layer with random signs. The direct encode keeps the branches: there the binarization's own
/// branches on the level follow the same outcome, and the branch-free form measured slower.
#[inline(always)]
pub(crate) fn coded_level_branchless(r: i64, state: u32) -> i64 {
    let q = (state & 1) as i64;
    let s = r >> 63; // 0 or -1
    (r + ((q ^ s) - s)) >> 1
}

/// Reconstruction index of coded level `level` in trellis state `state`.
#[inline(always)]
pub fn reconstruction_index(level: i64, state: u32) -> i64 {
    if level == 0 {
        0
    } else {
        2 * level - level.signum() * (state & 1) as i64
    }
}

/// [`STATE_TRANS`] packed into one word: entry `[s][p]` in the 4 bits at `4 * (2s + p)`.
// Evaluated at compile time: an index out of range would fail the build.
#[allow(clippy::indexing_slicing)]
const STATE_TRANS_PACKED: u64 = {
    let mut t = 0u64;
    let mut i = 0;
    while i < 16 {
        t |= (STATE_TRANS[i / 2][i % 2] as u64 & 7) << (4 * i);
        i += 1;
    }
    t
};

/// Next dependent-quantization state after coding `level`.
#[inline(always)]
pub fn next_state(state: u32, level: i64) -> u32 {
    let i = ((state & 7) << 1) | (level & 1) as u32;
    ((STATE_TRANS_PACKED >> (4 * i)) & 7) as u32
}

/// Codes bins with the encoder's registers in a local (`st`), counting them.
struct Writer<'a> {
    st: EncState,
    out: &'a mut EncOut,
    ctx: &'a mut [ContextModel],
    bins: u64,
    /// Set when a bin's context was outside `ctx` (cannot happen: `ctx` is sized to the
    /// layout that numbers the bins); the caller turns it into an error.
    missed: bool,
}

impl BinSink for Writer<'_> {
    #[inline(always)]
    fn regular(&mut self, ctx: usize, bin: u32) {
        self.bins += 1;
        match self.ctx.get_mut(ctx) {
            Some(m) => self.st.encode_bin(self.out, bin, m),
            None => self.missed = true,
        }
    }
    #[inline(always)]
    fn bypass(&mut self, value: u32, n: u32) {
        self.bins += n as u64;
        self.st.encode_bypass_bits(self.out, value, n);
    }
}

/// Bins per full recorded word.
const WORD_BINS: u32 = 63;

/// The regular bins of each context, for the trial pass (spec §8).
///
/// The open word of context `c` is `cur[c]`: a 1 (sentinel) followed by the bins recorded since
/// the last full word, the first one highest, so that recording a bin is one shift and one or
/// (and, for a bin sent with `valid` 0, a shift by 0). When the sentinel reaches bit 63 the word
/// holds 63 bins and moves to `words[c]`, reordered to first bin lowest.
#[derive(Debug, Clone)]
struct BinRecord {
    /// One per context number a layout can have (`90 + 4 MAX_GTX_FLAGS < 2^15`), so that a
    /// masked context needs no bounds check.
    cur: Box<[u64; 1 << 15]>,
    words: Vec<Vec<u64>>,
    /// The trial models of each context whose words have been fed to them (see
    /// [`FEED_WORDS`]), allocated on first use.
    lanes: Vec<Option<Box<TrialLanes>>>,
}

/// Full words a context holds before its trial models consume them: the record then stays
/// within a few KiB a context however long the layer (it was 1.5 bytes a weight of a dense
/// layer). Unit tests feed every few words, so that layers of a few thousand levels do.
#[cfg(not(test))]
const FEED_WORDS: usize = 1024;
#[cfg(test)]
const FEED_WORDS: usize = 3;

impl BinRecord {
    fn new() -> Self {
        let cur = vec![1u64; 1 << 15].into_boxed_slice();
        BinRecord {
            // The length is right, so the fallback is never taken.
            cur: cur.try_into().unwrap_or_else(|_| Box::new([1; 1 << 15])),
            words: Vec::new(),
            lanes: Vec::new(),
        }
    }

    /// Empties the words of contexts `..len`.
    fn reset(&mut self, len: usize) {
        for c in self.cur.iter_mut().take(len) {
            *c = 1;
        }
        self.words.resize_with(len, Vec::new);
        for w in &mut self.words {
            w.clear();
        }
        self.lanes.clear();
        self.lanes.resize_with(len, || None);
    }

    /// Appends `bin` to context `ctx` if `valid` is 1; leaves it as it was if `valid` is 0.
    #[inline(always)]
    fn push_if(&mut self, ctx: usize, bin: u32, valid: u32) {
        let v = valid & 1;
        // `ctx < 2^15` (see `cur`): the mask changes nothing and the fallback is dead code.
        if let Some(c) = self.cur.get_mut(ctx & 0x7FFF) {
            *c = (*c << v) | (bin & v) as u64;
            if *c >> 63 != 0 {
                self.flush(ctx);
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn flush(&mut self, ctx: usize) {
        if let (Some(c), Some(w)) = (self.cur.get_mut(ctx & 0x7FFF), self.words.get_mut(ctx)) {
            w.push(c.reverse_bits() >> 1);
            *c = 1;
            if w.len() >= FEED_WORDS {
                if let Some(l) = self.lanes.get_mut(ctx) {
                    l.get_or_insert_with(|| Box::new(TrialLanes::new())).feed(w);
                    w.clear();
                }
            }
        }
    }

    /// The trial costs of context `c` over all its bins, or `None` if it has none.
    fn costs(&mut self, c: usize) -> Option<[u64; NUM_INIT_SETS]> {
        let fed = self.lanes.get_mut(c).and_then(Option::take);
        let (words, last, n) = self.bins(c);
        if fed.is_none() && words.is_empty() && n == 0 {
            return None;
        }
        let mut t = fed.unwrap_or_else(|| Box::new(TrialLanes::new()));
        t.feed(words);
        Some(t.finish(last, n))
    }

    /// The full words of context `c` (63 bins each, first lowest), its open word's bins (first
    /// lowest) and their number.
    fn bins(&self, c: usize) -> (&[u64], u64, u32) {
        let cur = self.cur.get(c & 0x7FFF).copied().unwrap_or(1);
        let k = 63 - cur.leading_zeros();
        let last = if k == 0 {
            0
        } else {
            cur.reverse_bits() >> (64 - k)
        };
        let words = self.words.get(c).map_or(&[][..], |w| &w[..]);
        (words, last, k)
    }
}

struct Recorder<'a> {
    rec: &'a mut BinRecord,
}

impl BinSink for Recorder<'_> {
    #[inline(always)]
    fn regular(&mut self, ctx: usize, bin: u32) {
        self.rec.push_if(ctx, bin, 1);
    }
    #[inline(always)]
    fn bypass(&mut self, _value: u32, _n: u32) {}
}

impl Record for Recorder<'_> {
    #[inline(always)]
    fn regular_if(&mut self, ctx: usize, bin: u32, valid: u32) {
        self.rec.push_if(ctx, bin, valid);
    }
}

/// A sink that can also take a bin only when `valid` is 1 and leave no trace when it is 0, so
/// that recording needs no branch on a level's first bins.
trait Record: BinSink {
    fn regular_if(&mut self, ctx: usize, bin: u32, valid: u32);

    /// The significance flag `bins[0]` on context `ctx[0]`, then (if it is 1) the sign and the
    /// first greater-than flag on `ctx[1]` and `ctx[2]`.
    #[inline(always)]
    fn head(&mut self, ctx: [usize; 3], bins: [u32; 3]) {
        let [c0, c1, c2] = ctx;
        let [nz, b1, b2] = bins;
        self.regular(c0, nz);
        self.regular_if(c1, b1, nz);
        self.regular_if(c2, b2, nz);
    }
}

/// Emits the bins of `level` like [`binarize`], branching only for magnitudes above `K`
/// (1 or 2): the significance, sign and first `K` greater-than flags are sent with `valid` set
/// when they exist (in the random order of a layer's zeros, ones and twos that branch would be
/// mispredicted often). With `K = 2`, layers of one greater-than flag take the `K = 1` path.
#[inline(always)]
fn record<const K: u32, S: Record>(
    sink: &mut S,
    layout: ContextLayout,
    g: u32,
    level: i64,
    state: u32,
    prev: i64,
) {
    let nb = neighbour_class(prev);
    let nz = (level != 0) as u32;
    let negative = level < 0;
    let abs = level.unsigned_abs();
    let more = abs > 1;
    sink.head(
        [
            layout.sig(state, nb),
            layout.sign(nb),
            layout.gtx(0, negative),
        ],
        [nz, negative as u32, more as u32],
    );
    if K >= 2 && g >= 2 {
        let more2 = abs > 2;
        sink.regular_if(layout.gtx(1, negative), more2 as u32, more as u32);
        if more2 {
            binarize_gtx_from(sink, layout, g, abs, negative, 2);
        }
    } else if more {
        binarize_gtx_from(sink, layout, g, abs, negative, 1);
    }
}

/// Codes `levels` (which follow those already coded; `walk` is the trellis state and previous
/// coded level after them) by recording and replaying a budget of entries at a time in `buf`.
/// Returns the bins coded.
fn replay_rest(
    st: &mut EncState,
    out: &mut EncOut,
    models: &mut ReplayModels,
    buf: &mut Vec<u16>,
    mut levels: &[i32],
    params: &LayerParams,
    mut walk: (u32, i64),
) -> u64 {
    let mut bins = 0;
    while !levels.is_empty() {
        let (n, len, b) = record_chunk(buf, levels, params, &mut walk);
        replay(st, out, models, buf.get(..len).unwrap_or_default());
        bins += b;
        levels = levels.get(n.max(1)..).unwrap_or_default();
    }
    bins
}

/// Records the real encode's bins of `levels` from the start into `out` until the record
/// reaches [`FLAT_BUDGET`] entries; `walk` (trellis state, previous coded level) is carried.
/// Returns the levels recorded, the entries and the bins.
fn record_chunk(
    out: &mut Vec<u16>,
    levels: &[i32],
    params: &LayerParams,
    walk: &mut (u32, i64),
) -> (usize, usize, u64) {
    let layout = params.layout();
    let g = params.num_gtx_flags;
    let mut flat = Flat {
        out,
        pos: 0,
        extra: 0,
    };
    let mut n = 0;
    let (mut state, mut prev) = *walk;
    for &x in levels {
        let level = if params.dq_flag {
            coded_level_branchless(x as i64, state)
        } else {
            x as i64
        };
        record::<1, _>(&mut flat, layout, g, level, state, prev);
        prev = level;
        if params.dq_flag {
            state = next_state(state, level);
        }
        n += 1;
        if flat.pos >= FLAT_BUDGET {
            break;
        }
    }
    *walk = (state, prev);
    let Flat { pos, extra, .. } = flat;
    (n, pos, (pos as i64 + extra) as u64)
}

/// Entries a [`Flat`] record may hold before the trial pass stops adding to it (one level's
/// entries past it at most). The levels after that are binarized again by the real encode:
/// the record is a speed-up whose memory must stay a constant (4 MiB of entries, about a
/// million Laplacian levels), not a multiple of the layer (a dense layer takes 20+ entries a
/// level). Unit tests use a small budget so that layers of a few thousand levels cross it.
#[cfg(not(test))]
const FLAT_BUDGET: usize = 1 << 21;
/// Room past [`FLAT_BUDGET`]: more than one level's entries (`3 + G + 31 + 3`, G <= 4096).
const FLAT_SLACK: usize = 1 << 13;
#[cfg(test)]
const FLAT_BUDGET: usize = 1 << 12;

/// Marks a run of bypass bins in a [`Flat`] record: `BYPASS | n`, then the value's high and
/// low 16 bits. Regular entries are `2 ctx + bin < 2 * 16474`, all below it.
const BYPASS: u16 = 0xF000;

/// Records the bins of the real encode in coding order, so that the encode after the trial
/// pass replays them instead of binarizing the levels again.
struct Flat<'a> {
    /// Entries `..pos` are recorded; the rest is room.
    out: &'a mut Vec<u16>,
    pos: usize,
    /// Bins recorded minus entries (a bypass run of `n` bins takes 3 entries).
    extra: i64,
}

impl Flat<'_> {
    /// Writes `e` at `pos` and keeps it if `valid` is 1.
    #[inline(always)]
    fn put(&mut self, e: u16, valid: u32) {
        match self.out.get_mut(self.pos) {
            Some(slot) => *slot = e,
            None => self.grow(e),
        }
        self.pos += (valid & 1) as usize;
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self, e: u16) {
        self.out.truncate(self.pos);
        self.out.push(e);
        // Doubling, but never past the budget and one level's entries: the record stops at
        // the first level that ends past the budget.
        let room = self.out.capacity().max(1 << 12);
        let len = (self.pos + room)
            .min(FLAT_BUDGET + FLAT_SLACK)
            .max(self.pos + 1);
        self.out.resize(len, 0);
    }
}

impl BinSink for Flat<'_> {
    #[inline(always)]
    fn regular(&mut self, ctx: usize, bin: u32) {
        self.regular_if(ctx, bin, 1);
    }
    #[inline(always)]
    fn bypass(&mut self, value: u32, n: u32) {
        self.put(BYPASS | n as u16, 1);
        self.put((value >> 16) as u16, 1);
        self.put(value as u16, 1);
        self.extra += n as i64 - 3;
    }
}

impl Record for Flat<'_> {
    #[inline(always)]
    fn regular_if(&mut self, ctx: usize, bin: u32, valid: u32) {
        // `ctx < 90 + 4 MAX_GTX_FLAGS`, so the entry fits in 15 bits.
        self.put(((ctx << 1) as u16) | (bin & 1) as u16, valid);
    }

    /// One bounds check for the three entries: all three are written at fixed offsets and the
    /// last two kept only for a nonzero level (both have `valid = nz`).
    #[inline(always)]
    fn head(&mut self, ctx: [usize; 3], bins: [u32; 3]) {
        let [c0, c1, c2] = ctx;
        let [nz, b1, b2] = bins;
        let e = |c: usize, b: u32| ((c << 1) as u16) | (b & 1) as u16;
        if let Some([s0, s1, s2, ..]) = self.out.get_mut(self.pos..) {
            *s0 = e(c0, nz);
            *s1 = e(c1, b1);
            *s2 = e(c2, b2);
            self.pos += 1 + 2 * (nz & 1) as usize;
        } else {
            self.regular(c0, nz);
            self.regular_if(c1, b1, nz);
            self.regular_if(c2, b2, nz);
        }
    }
}

/// Both records at once, for `dq_flag = 0` where the trial pass and the encode see the same bins.
struct Both<'a> {
    rec: Recorder<'a>,
    flat: Flat<'a>,
}

impl BinSink for Both<'_> {
    #[inline(always)]
    fn regular(&mut self, ctx: usize, bin: u32) {
        self.rec.regular(ctx, bin);
        self.flat.regular(ctx, bin);
    }
    #[inline(always)]
    fn bypass(&mut self, value: u32, n: u32) {
        self.flat.bypass(value, n);
    }
}

impl Record for Both<'_> {
    #[inline(always)]
    fn regular_if(&mut self, ctx: usize, bin: u32, valid: u32) {
        self.rec.regular_if(ctx, bin, valid);
        self.flat.regular_if(ctx, bin, valid);
    }
    /// [`Flat`]'s head, with its single bounds check (about 1.5 % faster at 1M levels).
    #[inline(always)]
    fn head(&mut self, ctx: [usize; 3], bins: [u32; 3]) {
        self.rec.head(ctx, bins);
        self.flat.head(ctx, bins);
    }
}

/// Reusable buffers so that coding many layers allocates once.
#[derive(Default, Debug, Clone)]
pub(crate) struct Scratch {
    ctx: Vec<ContextModel>,
    /// The decoder's copy of `ctx` in the layout of its bin loop.
    dec: Vec<DecModel>,
    /// The trial pass's record, allocated on first use.
    bins: Option<BinRecord>,
    /// The real encode's bins, recorded by the trial pass (see [`Flat`]): the entries
    /// `..flat_len` (the rest is room kept for the next layer), and the number of bins.
    flat: Vec<u16>,
    flat_len: usize,
    flat_bins: u64,
    /// The levels the record holds (`..flat_levels`; the rest are coded directly, see
    /// [`FLAT_BUDGET`]), and the trellis state and previous coded level after them.
    flat_levels: usize,
    flat_walk: (u32, i64),
    /// The contexts of [`replay`], allocated on first use.
    models: Option<Box<ReplayModels>>,
}

impl Scratch {
    fn reset(&mut self, len: usize) {
        self.ctx.clear();
        self.ctx.resize(len, ContextModel::new(0));
    }
}

/// Initialisation set per context chosen by the reference encoder's trial pass (spec §8).
fn choose_init_sets(levels: &[i32], params: &LayerParams, scratch: &mut Scratch) -> Vec<u8> {
    let costs = trial_pass(levels, params, scratch);
    let mut sets = vec![0u8; costs.len()];
    for (set, costs) in sets.iter_mut().zip(costs) {
        // No bins: every cost is 0 and set 0 wins.
        let Some(costs) = costs else {
            continue;
        };
        // Signalling a set other than 0 costs 3 bypass bins; ties go to the lowest set.
        let (best, _) = costs
            .iter()
            .enumerate()
            .map(|(e, &c)| (e, c + if e > 0 { 3 * 32768 } else { 0 }))
            .fold((0, u64::MAX), |m, x| if x.1 < m.1 { x } else { m });
        *set = best as u8;
    }
    sets
}

/// The trial costs `acc[c][e]` of spec §8 of every signalled context `c` that has bins (by
/// context number), recording on the way the real encode's bins for [`replay`] (see [`Flat`]).
///
/// The bins of every context are recorded in words, which its nine trial models consume a run
/// of words at a time (see [`BinRecord`] and [`TrialLanes`]).
fn trial_pass(
    levels: &[i32],
    params: &LayerParams,
    scratch: &mut Scratch,
) -> Vec<Option<[u64; NUM_INIT_SETS]>> {
    let layout = params.layout();
    let g = params.num_gtx_flags;
    let bins = scratch.bins.get_or_insert_with(BinRecord::new);
    bins.reset(layout.len());
    let rec = Recorder { rec: bins };
    // Room for about two bins a level (Laplacian layers with 60 % zeros take 1.9), within the
    // budget; more grows. A fresh zeroed vector comes from the allocator already zeroed.
    let room = levels
        .len()
        .saturating_mul(2)
        .min(FLAT_BUDGET)
        .saturating_add(FLAT_SLACK);
    if scratch.flat.len() < room {
        scratch.flat = vec![0; room];
    }
    let flat = Flat {
        out: &mut scratch.flat,
        pos: 0,
        extra: 0,
    };
    let mut both = Both { rec, flat };
    let mut it = levels.iter();
    let mut recorded = 0;
    let walk;
    if params.dq_flag {
        let (mut state, mut prev, mut prev_level) = (0u32, 0i64, 0i64);
        for &x in it.by_ref() {
            let x = x as i64;
            // The reference binarizes the caller's value (not the coded level) here: quirk of §8.
            // Indices of magnitude 2 are as common as 1 (a dependent quantizer's output), so
            // the second greater-than flag goes branch-free too.
            record::<2, _>(&mut both.rec, layout, g, x, state, prev);
            let level = coded_level_branchless(x, state);
            record::<1, _>(&mut both.flat, layout, g, level, state, prev_level);
            prev = x;
            prev_level = level;
            state = next_state(state, level);
            recorded += 1;
            if both.flat.pos >= FLAT_BUDGET {
                break;
            }
        }
        walk = (state, prev_level);
        // Past the budget the trial pass records alone.
        for &x in it {
            let x = x as i64;
            record::<2, _>(&mut both.rec, layout, g, x, state, prev);
            prev = x;
            state = next_state(state, coded_level_branchless(x, state));
        }
    } else {
        let mut prev = 0i64;
        for &x in it.by_ref() {
            let x = x as i64;
            record::<1, _>(&mut both, layout, g, x, 0, prev);
            prev = x;
            recorded += 1;
            if both.flat.pos >= FLAT_BUDGET {
                break;
            }
        }
        walk = (0, prev);
        for &x in it {
            let x = x as i64;
            record::<1, _>(&mut both.rec, layout, g, x, 0, prev);
            prev = x;
        }
    }
    let Flat { pos, extra, .. } = both.flat;
    scratch.flat_len = pos;
    scratch.flat_bins = (pos as i64 + extra) as u64;
    scratch.flat_levels = recorded;
    scratch.flat_walk = walk;
    let mut costs = vec![None; layout.len()];
    let Some(bins) = scratch.bins.as_mut() else {
        return costs;
    };
    for c in layout.signalled(params.dq_flag) {
        if let Some(slot) = costs.get_mut(c) {
            *slot = bins.costs(c);
        }
    }
    costs
}

/// Everything a trial-model step looks up for one bin value, in one block so that a single
/// pointer per bin reaches every table and the shift selects a row at a constant offset.
struct BinTables {
    /// Bit estimate by `512 + (p >> 3)`.
    est: [u32; 1024],
    /// Next `a + 128` by `256 (shift_a - 4) + a + 128`.
    next_ia: [u8; 1024],
    /// Next `b + 2048` by `4096 (shift_b - 4) + b + 2048` (spec §3.4 via [`DELTA_B`]): one lookup,
    /// the shortest dependency chain a model's `b` can have. `b + 2048` stays in 125..=3971.
    next_bo: [u16; 1 << 14],
    /// For [`replay`], whose models keep their rows with their estimates: next
    /// `256 (shift_a - 4) + a + 128` by the same, and next `4096 (shift_b - 4) + b + 2048` by
    /// the same (the entries of `next_ia` and `next_bo` plus the row offset).
    next_ria: [u16; 1024],
    next_rbo: [u16; 1 << 14],
}

/// [`BinTables`] for bin 0 and bin 1.
// Evaluated at compile time: an index out of range would fail the build.
#[allow(clippy::indexing_slicing)]
static BIN_TABLES: [BinTables; 2] = {
    let empty = BinTables {
        est: [0; 1024],
        next_ia: [0; 1024],
        next_bo: [0; 1 << 14],
        next_ria: [0; 1024],
        next_rbo: [0; 1 << 14],
    };
    let mut t = [
        empty,
        BinTables {
            est: [0; 1024],
            next_ia: [0; 1024],
            next_bo: [0; 1 << 14],
            next_ria: [0; 1024],
            next_rbo: [0; 1 << 14],
        },
    ];
    let mut bin = 0;
    while bin < 2 {
        let mut i = 0;
        while i < 1024 {
            t[bin].est[i] = EST_BITS[i][bin];
            i += 1;
        }
        let mut s = 0;
        while s < 4 {
            let mut i = 0;
            while i < 256 {
                t[bin].next_ia[256 * s + i] = (NEXT_A[s][bin][i] as i32 + 128) as u8;
                t[bin].next_ria[256 * s + i] =
                    (256 * s as i32 + NEXT_A[s][bin][i] as i32 + 128) as u16;
                i += 1;
            }
            let mut bo = 0;
            while bo < 4096 {
                // `16 + ((b - 1 + bin) >> 7) = (bo - 1 + bin) >> 7`, see [`DELTA_B`].
                let j = ((bo + bin) as u32).wrapping_sub(1) >> 7 & 31;
                let d = DELTA_B[s][bin][j as usize] as i32;
                t[bin].next_bo[4096 * s + bo] = (bo as i32 + d) as u16;
                t[bin].next_rbo[4096 * s + bo] = (4096 * s as i32 + bo as i32 + d) as u16;
                bo += 1;
            }
            s += 1;
        }
        bin += 1;
    }
    t
};

/// One trial model: state and accumulated cost.
///
/// The estimates are kept offset so that no lookup needs an offset or a sign: `ia = a + 128`
/// (0..=255) and `bo = b + 2048` (positive), so that `(16 ia + bo) >> 3 = 512 + (p >> 3)` is the
/// bit-estimate index and `bo` indexes the next `bo`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Lane {
    ia: u32,
    bo: u32,
    acc: u64,
}

/// Advances one trial model with shifts `SA`, `SB` (minus 4) by one bin (`tb` its tables),
/// adding its cost to `acc`.
#[inline(always)]
fn step<const SA: usize, const SB: usize>(
    ia: &mut u8,
    bo: &mut u32,
    acc: &mut u64,
    tb: &BinTables,
) {
    // `(16 ia + bo) >> 3 = 2 ia + (bo >> 3)`: 16 ia is a multiple of 8. The masks (and the u8
    // index) keep every index inside its table, so the `get`s compile to plain loads.
    let i = (2 * *ia as u32 + (*bo >> 3)) as usize & 1023;
    *acc += tb.est.get(i).copied().unwrap_or(0) as u64;
    *ia = tb
        .next_ia
        .get(256 * SA + *ia as usize)
        .copied()
        .unwrap_or(0);
    *bo = (tb.next_bo)
        .get(4096 * SB + (*bo as usize & 4095))
        .map_or(0, |&x| x as u32);
}

/// [`step`] for a model whose `b` estimate is `bo`, that of another lane advanced by that lane.
#[inline(always)]
fn step_shared<const SA: usize>(ia: &mut u8, bo: u32, acc: &mut u64, tb: &BinTables) {
    let i = (2 * *ia as u32 + (bo >> 3)) as usize & 1023;
    *acc += tb.est.get(i).copied().unwrap_or(0) as u64;
    *ia = tb
        .next_ia
        .get(256 * SA + *ia as usize)
        .copied()
        .unwrap_or(0);
}

/// Runs the distinct lanes of all four shift groups over `n` bins of `bits` (LSB first), all
/// interleaved so that the per-lane dependency chains overlap.
///
/// `idx` lists the running lanes: `N0` of group 0 (shifts 5, 4), one of group 1 (4, 5), `N2` of
/// group 2 (6, 6) and `N3` of group 3 (7, 5), in that order. The first `S3` lanes of group 3 have
/// the `b` estimate of group 1 (same shift, same value), so only group 1 advances it.
// Indexing is allowed here only: this is the innermost loop of the encoder's trial pass (its
// bins come from the caller's levels, never from stream bytes), and written with `get` and
// iterators it ran 4-6 % more instructions. Every index is in range: `run_word` dispatches only
// N0 <= 3, N2 <= 3, S3 <= N3 <= 2, so `k < total <= 9 = NUM_INIT_SETS`, the length of `a`, `b`,
// `acc` and `lanes`; `idx` holds `total` set numbers from `GROUPS` (all < 9); `bin` is a
// masked bit, and there are 2 [`BinTables`]. The proptests `trial_pass_*` check it against
// the lockstep reference of spec §8, and the round-trip fuzz target runs it on arbitrary levels.
#[allow(clippy::indexing_slicing)]
#[inline(always)]
fn run_lanes<
    const N0: usize,
    const N2: usize,
    const N3: usize,
    const S3: usize,
    const FROZEN3: bool,
>(
    lanes: &mut [Lane; NUM_INIT_SETS],
    idx: &[usize],
    bits: u64,
    n: u32,
) {
    let mut a = [0u8; NUM_INIT_SETS];
    let mut b = [0u32; NUM_INIT_SETS];
    let mut acc = [0u64; NUM_INIT_SETS];
    let total = N0 + 1 + N2 + N3;
    for k in 0..total {
        let l = lanes[idx[k]];
        (a[k], b[k], acc[k]) = (l.ia as u8, l.bo, l.acc);
    }
    for i in 0..n {
        let bin = ((bits >> i) & 1) as usize;
        let tb = &BIN_TABLES[bin];
        let b1 = b[N0];
        for k in 0..N0 {
            step::<1, 0>(&mut a[k], &mut b[k], &mut acc[k], tb);
        }
        let k = N0;
        step::<0, 1>(&mut a[k], &mut b[k], &mut acc[k], tb);
        for k in N0 + 1..N0 + 1 + N2 {
            step::<2, 2>(&mut a[k], &mut b[k], &mut acc[k], tb);
        }
        for k in N0 + 1 + N2..N0 + 1 + N2 + S3 {
            if FROZEN3 {
                // `a` stays: only the estimate (see `run_word`).
                let i = (2 * a[k] as u32 + (b1 >> 3)) as usize & 1023;
                acc[k] += tb.est[i] as u64;
            } else {
                step_shared::<3>(&mut a[k], b1, &mut acc[k], tb);
            }
        }
        for k in N0 + 1 + N2 + S3..total {
            step::<3, 1>(&mut a[k], &mut b[k], &mut acc[k], tb);
        }
    }
    for k in N0 + 1 + N2..N0 + 1 + N2 + S3 {
        b[k] = b[N0];
    }
    for k in 0..total {
        lanes[idx[k]] = Lane {
            ia: a[k] as u32,
            bo: b[k],
            acc: acc[k],
        };
    }
}

/// The shift groups of the nine sets: models of one group whose states coincide stay equal.
const GROUPS: [&[usize]; 4] = [&[0, 1, 2], &[3], &[4, 5, 6], &[7, 8]];

/// Runs the distinct lanes of each group over one word of bins.
fn run_word(lanes: &mut [Lane; NUM_INIT_SETS], active: &[Vec<usize>; 4], bits: u64, n: u32) {
    let mut idx = [0usize; NUM_INIT_SETS];
    let mut k = 0;
    for grp in active {
        for &l in grp {
            if let Some(slot) = idx.get_mut(k) {
                *slot = l;
            }
            k += 1;
        }
    }
    let idx = idx.get(..k).unwrap_or_default();
    // Leading lanes of group 3 whose `b` is group 1's: set 7 always (sets 3 and 7 start with the
    // same `b` and shift), set 8 once its `b` has met theirs.
    let b1 = active[1].first().and_then(|&l| lanes.get(l)).map(|l| l.bo);
    let s3 = active[3]
        .iter()
        .take_while(|&&l| lanes.get(l).map(|l| l.bo) == b1)
        .count();
    // Those lanes' `a` usually never moves: shift 7 leaves an `a` within 8 of 0 where it is,
    // whatever the bin (sets 7 and 8 start at 0 and 8). Then they only look up their estimate,
    // one load a bin instead of two (about 2 % of a param_opt encode).
    let frozen = active[3].iter().take(s3).all(|&l| {
        let ia = lanes.get(l).map_or(0, |x| x.ia as usize & 255);
        BIN_TABLES
            .iter()
            .all(|t| t.next_ia.get(768 + ia) == Some(&(ia as u8)))
    });
    macro_rules! dispatch {
        ($(($n0:literal, $n2:literal, $n3:literal, $s3:literal)),*) => {
            match (active[0].len(), active[2].len(), active[3].len(), s3) {
                $(($n0, $n2, $n3, $s3) => if frozen {
                    run_lanes::<$n0, $n2, $n3, $s3, true>(lanes, idx, bits, n)
                } else {
                    run_lanes::<$n0, $n2, $n3, $s3, false>(lanes, idx, bits, n)
                },)*
                _ => unreachable!("every group keeps one lane"),
            }
        };
    }
    dispatch!(
        (1, 1, 1, 0),
        (1, 1, 1, 1),
        (1, 1, 2, 0),
        (1, 1, 2, 1),
        (1, 1, 2, 2),
        (1, 2, 1, 0),
        (1, 2, 1, 1),
        (1, 2, 2, 0),
        (1, 2, 2, 1),
        (1, 2, 2, 2),
        (1, 3, 1, 0),
        (1, 3, 1, 1),
        (1, 3, 2, 0),
        (1, 3, 2, 1),
        (1, 3, 2, 2),
        (2, 1, 1, 0),
        (2, 1, 1, 1),
        (2, 1, 2, 0),
        (2, 1, 2, 1),
        (2, 1, 2, 2),
        (2, 2, 1, 0),
        (2, 2, 1, 1),
        (2, 2, 2, 0),
        (2, 2, 2, 1),
        (2, 2, 2, 2),
        (2, 3, 1, 0),
        (2, 3, 1, 1),
        (2, 3, 2, 0),
        (2, 3, 2, 1),
        (2, 3, 2, 2),
        (3, 1, 1, 0),
        (3, 1, 1, 1),
        (3, 1, 2, 0),
        (3, 1, 2, 1),
        (3, 1, 2, 2),
        (3, 2, 1, 0),
        (3, 2, 1, 1),
        (3, 2, 2, 0),
        (3, 2, 2, 1),
        (3, 2, 2, 2),
        (3, 3, 1, 0),
        (3, 3, 1, 1),
        (3, 3, 2, 0),
        (3, 3, 2, 1),
        (3, 3, 2, 2)
    );
}

/// Whether two running lanes of one group have the same state (and so can merge). Cheaper
/// than the merge itself, which would otherwise run after every word: sets 7 and 8 rarely
/// meet (with shift 7 an `a` estimate within 8 of 0 never moves).
fn any_equal(lanes: &[Lane; NUM_INIT_SETS], active: &[Vec<usize>; 4]) -> bool {
    let state = |l: usize| lanes.get(l).map(|x| (x.ia, x.bo));
    active.iter().any(|grp| {
        grp.iter()
            .enumerate()
            .any(|(i, &x)| grp.iter().skip(i + 1).any(|&y| state(x) == state(y)))
    })
}

/// Shortest run of one bin value that the trial pass codes per lane in closed form
/// ([`skip_run`]) rather than stepping (16..=32, see [`long_runs`]). Shorter runs are stepped:
/// with 16, the closed forms of the Laplacian benchmark's runs of zeros took as many
/// instructions as stepping them, and 24 loses nothing measurable on dense layers.
const MIN_SKIP: u32 = 24;
const _: () = assert!(MIN_SKIP >= 16 && MIN_SKIP <= 32);

/// `(shift_a - 4, shift_b - 4)` of each shift group of [`GROUPS`].
const GROUP_SHIFTS: [(usize, usize); 4] = [(1, 0), (0, 1), (2, 2), (3, 1)];

/// The strides `d` by which `x = 16 (a + 128) + b + 2048` moves per bin while a run moves both
/// estimates (`16 ca + cb`), `a` alone (`16 ca`) or `b` alone (`cb`), where `ca = 64 >> shift_a`
/// and `cb = 64 >> shift_b` are the constant steps of spec §3.4 between 0 and the fixed point.
const STRIDES: [usize; 9] = [1, 2, 4, 16, 17, 32, 36, 64, 66];

/// Row of `d` in [`RUN_SUMS`].
#[inline(always)]
fn stride_row(d: u32) -> Option<usize> {
    STRIDES.iter().position(|&s| s == d as usize)
}

/// Sums of bit estimates along chains of stride `d` (`[bin][row of d][x]`, `x < 8192`), so that
/// the estimates of a run whose model moves `x` by a constant stride are one difference:
/// for bin 1, `T[x] = T[x - d] + EST_BITS[(x - d) >> 3][1]` (`T[x + d t] - T[x]` sums the
/// estimates at `x, x + d, ..`); for bin 0, `T[x] = T[x - d] + EST_BITS[x >> 3][0]`
/// (`T[x] - T[x - d t]` sums those at `x, x - d, ..`). Each chain is a sum of at most 8192
/// estimates below 2^18, so it fits in 32 bits.
// Evaluated at compile time: an index out of range would fail the build.
#[allow(clippy::indexing_slicing)]
static RUN_SUMS: [[[u32; 8192]; 9]; 2] = {
    let mut t = [[[0u32; 8192]; 9]; 2];
    let mut r = 0;
    while r < 9 {
        let d = STRIDES[r];
        let mut x = 0;
        while x < 8192 {
            if x >= d {
                t[1][r][x] = t[1][r][x - d] + EST_BITS[(x - d) >> 3][1];
                t[0][r][x] = t[0][r][x - d] + EST_BITS[x >> 3][0];
            } else {
                t[0][r][x] = EST_BITS[x >> 3][0];
            }
            x += 1;
        }
        r += 1;
    }
    t
};

/// Sum of the bit estimates of `t` bins of value `v` from `x` on, `x` moving by `d` per bin
/// (up for 1, down for 0). The chain stays inside the table: the caller's estimates stay in
/// their ranges, so `x` does.
#[inline(always)]
fn run_sum(v: usize, d: u32, x: u32, t: u32) -> u64 {
    let sum = |row: &[u32; 8192], hi: u32, lo: u32| {
        let h = row.get(hi as usize & 8191).copied().unwrap_or(0);
        let l = row.get(lo as usize & 8191).copied().unwrap_or(0);
        h.wrapping_sub(l) as u64
    };
    let est = |x: u32| {
        let e = EST_BITS.get((x >> 3) as usize & 1023);
        e.and_then(|e| e.get(v & 1)).copied().unwrap_or(0) as u64
    };
    if t == 0 {
        return 0;
    }
    if d == 0 {
        return t as u64 * est(x);
    }
    let row = stride_row(d).and_then(|r| RUN_SUMS.get(v & 1).and_then(|b| b.get(r)));
    match row {
        Some(row) if v == 1 => sum(row, x.wrapping_add(d * t), x),
        Some(row) => sum(row, x, x.wrapping_sub(d * t)),
        // Every stride a lane can take is listed: dead code, kept correct.
        None => (0..t)
            .map(|k| {
                let y = if v == 1 {
                    x.wrapping_add(d * k)
                } else {
                    x.wrapping_sub(d * k)
                };
                est(y)
            })
            .sum(),
    }
}

/// Advances one lane with shifts `(sa, sb)` (minus 4) over a run of `r` bins of value `v`.
///
/// Spec §3.4 moves `a` by the constant `ca = CURVE[16..31] >> shift_a = 64 >> shift_a` per bin
/// of a run of 1s while `0 <= a < 120`, and leaves it unchanged from 120 on (`CURVE[31] = 0`);
/// `b` likewise by `cb = 64 >> shift_b` while `0 <= b < 1920`; runs of 0s mirror this. So once
/// both estimates are in that region (or fixed), `x = 16 (a + 128) + b + 2048`, whose `x >> 3`
/// indexes the estimate, moves by a constant stride in at most three stretches (both moving,
/// one moving, none), each summed by [`run_sum`]. Until then the lane is stepped.
#[inline(always)]
fn lane_run(l: &mut Lane, (sa, sb): (usize, usize), v: usize, r: u32) {
    let Some(tb) = BIN_TABLES.get(v & 1) else {
        return; // dead code: `v & 1` is 0 or 1
    };
    let mut left = r;
    let (mut ia, mut bo) = (l.ia & 255, l.bo & 4095);
    let (a_fixed, b_fixed) = loop {
        let nia = tb.next_ia.get(256 * (sa & 3) + ia as usize).copied();
        let nbo = tb.next_bo.get(4096 * (sb & 3) + bo as usize).copied();
        let (nia, nbo) = (nia.unwrap_or(0) as u32, nbo.unwrap_or(0) as u32);
        let (a_fixed, b_fixed) = (nia == ia, nbo == bo);
        let (a_in, b_in) = if v == 1 {
            (ia >= 128, bo >= 2048)
        } else {
            (ia <= 128, bo <= 2048)
        };
        if (a_fixed || a_in) && (b_fixed || b_in) || left == 0 {
            break (a_fixed, b_fixed);
        }
        let i = (2 * ia + (bo >> 3)) as usize & 1023;
        l.acc += tb.est.get(i).copied().unwrap_or(0) as u64;
        (ia, bo) = (nia & 255, nbo & 4095);
        left -= 1;
    };
    let ca = if a_fixed { 0 } else { 64 >> ((sa & 3) + 4) };
    let cb = if b_fixed { 0 } else { 64 >> ((sb & 3) + 4) };
    // Bins until each estimate reaches its fixed point (a not fixed is short of it).
    let (mut ta, mut tb_) = match (v, ca, cb) {
        (_, 0, 0) => (0, 0),
        (1, _, _) => (
            if ca == 0 {
                0
            } else {
                248u32.saturating_sub(ia).div_ceil(ca)
            },
            if cb == 0 {
                0
            } else {
                3968u32.saturating_sub(bo).div_ceil(cb)
            },
        ),
        _ => (
            if ca == 0 {
                0
            } else {
                ia.saturating_sub(8).div_ceil(ca)
            },
            if cb == 0 {
                0
            } else {
                bo.saturating_sub(128).div_ceil(cb)
            },
        ),
    };
    while left > 0 {
        let x = 16 * ia + bo;
        if ta == 0 && tb_ == 0 {
            l.acc += run_sum(v, 0, x, left);
            break;
        }
        let t = left
            .min(if ta > 0 { ta } else { u32::MAX })
            .min(if tb_ > 0 { tb_ } else { u32::MAX });
        let (da, db) = (
            if ta > 0 { ca * t } else { 0 },
            if tb_ > 0 { cb * t } else { 0 },
        );
        let d = 16 * (if ta > 0 { ca } else { 0 }) + if tb_ > 0 { cb } else { 0 };
        l.acc += run_sum(v, d, x, t);
        // `t <= ta`, so `a` stops at its fixed point (`ia <= 251`, or `ia >= 9 - ca` for 0s),
        // and so does `b`: no wrap-around happens (wrapping ops only keep overflow checks out).
        if v == 1 {
            (ia, bo) = (ia.wrapping_add(da), bo.wrapping_add(db));
        } else {
            (ia, bo) = (ia.wrapping_sub(da), bo.wrapping_sub(db));
        }
        ta = ta.saturating_sub(t);
        tb_ = tb_.saturating_sub(t);
        left -= t;
    }
    (l.ia, l.bo) = (ia, bo);
}

/// Advances every running lane over a run of `r` bins of value `v` (see [`lane_run`]).
fn skip_run(lanes: &mut [Lane; NUM_INIT_SETS], active: &[Vec<usize>; 4], v: usize, r: u32) {
    for (grp, sh) in active.iter().zip(GROUP_SHIFTS) {
        for &l in grp {
            if let Some(x) = lanes.get_mut(l) {
                lane_run(x, sh, v, r);
            }
        }
    }
}

/// Bits `i` of `m` such that bits `i..i + MIN_SKIP` are all set.
#[inline(always)]
fn long_runs(m: u64) -> u64 {
    // Runs of at least 2, 4, 8, 16 bits, then `MIN_SKIP` (16..=32) as two overlapping 16s.
    let x = m & (m >> 1);
    let x = x & (x >> 2);
    let x = x & (x >> 4);
    let x = x & (x >> 8);
    x & (x >> (MIN_SKIP - 16))
}

/// Runs the lanes over `n` bins of `bits` (first lowest, `n <= 63`): runs of at least
/// [`MIN_SKIP`] equal bins in closed form ([`skip_run`]), the rest stepped ([`run_word`]).
/// A word without such a run (the common case in layers of small levels) is one test.
// Out of line: inlined into the trial pass it measured no faster, and apart it shows in profiles.
#[inline(never)]
fn run_bits(lanes: &mut [Lane; NUM_INIT_SETS], active: &[Vec<usize>; 4], bits: u64, n: u32) {
    let n = n.min(WORD_BINS);
    let valid = (1u64 << n) - 1;
    let long = long_runs(bits & valid) | long_runs(!bits & valid);
    if long == 0 {
        run_word(lanes, active, bits, n);
        return;
    }
    let mut pos = 0;
    while pos < n {
        let l = long & (!0u64 << pos);
        let start = if l == 0 { n } else { l.trailing_zeros().min(n) };
        if start > pos {
            run_word(lanes, active, bits >> pos, start - pos);
        }
        if start >= n {
            break;
        }
        let rest = bits >> start;
        let v = (rest & 1) as usize;
        let run = if v == 1 {
            rest.trailing_ones()
        } else {
            rest.trailing_zeros()
        };
        let run = run.min(n - start);
        skip_run(lanes, active, v, run);
        pos = start + run;
    }
}

/// Costs `acc[e]` of spec §8 for one context's bin sequence: full words of [`WORD_BINS`] bins,
/// then `n` bins of `last` (each word's first bin lowest).
#[cfg(test)]
fn trial_costs(words: &[u64], last: u64, n: u32) -> [u64; NUM_INIT_SETS] {
    let mut t = TrialLanes::new();
    t.feed(words);
    t.finish(last, n)
}

/// The nine trial models of one context (spec §8), fed its bins a run of words at a time.
///
/// Models of the same shift group whose `(a, b)` become equal stay equal forever, so from then on
/// only one of them runs and the others keep a constant offset in cost.
#[derive(Clone, Debug)]
struct TrialLanes {
    lanes: [Lane; NUM_INIT_SETS],
    /// `rep[e]`: the lane that runs for set `e`; `off[e]`: `acc[e] - acc[rep[e]]`.
    rep: [usize; NUM_INIT_SETS],
    off: [i64; NUM_INIT_SETS],
    /// The lanes still running, per shift group.
    active: [Vec<usize>; 4],
}

impl TrialLanes {
    fn new() -> Self {
        let mut t = TrialLanes {
            lanes: INIT_SETS.map(|(_, _, p, a)| Lane {
                ia: (a as i32 + 128) as u32,
                bo: (p as i32 - 16 * a as i32 + 2048) as u32,
                acc: 0,
            }),
            rep: core::array::from_fn(|e| e),
            off: [0; NUM_INIT_SETS],
            active: GROUPS.map(|g| g.to_vec()),
        };
        t.merge();
        t
    }

    /// Lets the lanes of a group with equal states run as one.
    fn merge(&mut self) {
        let TrialLanes {
            lanes,
            rep,
            off,
            active,
        } = self;
        for grp in active.iter_mut() {
            let mut i = 0;
            while let Some(&x) = grp.get(i) {
                let lx = lanes.get(x).copied().unwrap_or_default();
                // Lanes after `x` in this group with the same state join `x`.
                grp.retain(|&y| {
                    let ly = lanes.get(y).copied().unwrap_or_default();
                    if y == x || ly.ia != lx.ia || ly.bo != lx.bo {
                        return true;
                    }
                    let d = ly.acc as i64 - lx.acc as i64;
                    for (r, o) in rep.iter_mut().zip(off.iter_mut()) {
                        if *r == y {
                            *r = x;
                            *o += d;
                        }
                    }
                    false
                });
                i += 1;
            }
        }
    }

    /// Runs the lanes over full words of [`WORD_BINS`] bins (first bin lowest).
    fn feed(&mut self, words: &[u64]) {
        for &w in words {
            run_bits(&mut self.lanes, &self.active, w, WORD_BINS);
            let a = &self.active;
            if a[0].len() + a[2].len() + a[3].len() > 3 && any_equal(&self.lanes, a) {
                self.merge();
            }
        }
    }

    /// The costs after the last `n` bins, `last` (first bin lowest).
    fn finish(&mut self, last: u64, n: u32) -> [u64; NUM_INIT_SETS] {
        run_bits(&mut self.lanes, &self.active, last, n);
        let mut costs = [0u64; NUM_INIT_SETS];
        for ((c, &r), &o) in costs.iter_mut().zip(&self.rep).zip(&self.off) {
            *c = (self.lanes.get(r).map_or(0, |l| l.acc) as i64 + o) as u64;
        }
        costs
    }
}

/// Encodes one layer's payload into `enc` (spec §6.3).
pub(crate) fn encode_layer(
    enc: &mut ArithEncoder,
    scratch: &mut Scratch,
    levels: &[i32],
    shape: &[usize],
    params: &LayerParams,
    param_opt_flag: bool,
) -> Result<()> {
    params.validate()?;
    let (n, width) = shape_info(shape)?;
    if n != levels.len() {
        return Err(Error::InvalidParameter(format!(
            "shape {shape:?} holds {n} weights but {} levels were given",
            levels.len()
        )));
    }
    let layout = params.layout();
    if has_header_flags(params, n, width) {
        if params.parent_node_id_present_flag {
            enc.encode_bypass(0); // hist_dep_sig_prob_enabled_flag
        }
        enc.encode_bypass(0); // row_skip_enabled_flag
    }
    let sets = if param_opt_flag {
        Some(choose_init_sets(levels, params, scratch))
    } else {
        None
    };
    scratch.reset(layout.len());
    let ctx = &mut scratch.ctx;
    let e_ctx = layout.init_flag();
    for c in layout.signalled(params.dq_flag) {
        let e = sets.as_ref().and_then(|s| s.get(c)).copied().unwrap_or(0) as u32;
        enc.encode_bin((e > 0) as u32, model(ctx, e_ctx)?);
        if e > 0 {
            enc.encode_bypass_bits(e - 1, 3);
        }
        *model(ctx, c)? = ContextModel::new(e as usize);
    }
    let (st, out) = enc.parts();
    let (ok, bins) = if let Some(sets) = &sets {
        let models = scratch.models.get_or_insert_with(new_replay_models);
        for (m, &e) in models.iter_mut().zip(sets) {
            *m = EncModel::new(e as usize);
        }
        let mut regs = *st;
        let flat = scratch.flat.get(..scratch.flat_len).unwrap_or_default();
        replay(&mut regs, out, models, flat);
        *st = regs;
        // Past the record's budget the rest is recorded and replayed a budget at a time, in
        // the same buffer: the replay's tight loop beats binarizing and coding in one.
        let rest = levels.get(scratch.flat_levels..).unwrap_or_default();
        let walk = scratch.flat_walk;
        let bins = replay_rest(st, out, models, &mut scratch.flat, rest, params, walk);
        (true, scratch.flat_bins + bins)
    } else {
        encode_direct(st, out, ctx, levels, params)
    };
    if !ok {
        return Err(Error::InvalidParameter(
            "internal: a bin's context is outside the layout".into(),
        ));
    }
    enc.add_bins(bins);
    Ok(())
}

/// The encoder's copy of a context model for [`replay`]: the estimates and the shifts alone
/// (the coding engine's row and MPS are derived per bin, off its critical path).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct EncModel {
    /// `256 (shift_a - 4) + a + 128`: the index of the next value in [`BinTables::next_ria`].
    ria: u16,
    /// `4096 (shift_b - 4) + b + 2048`: the index of the next value in [`BinTables::next_rbo`].
    rbo: u16,
}

impl EncModel {
    /// A model in initialisation set `set` (out-of-range sets saturate to the last).
    fn new(set: usize) -> Self {
        let (sh0, sh1, p, a) = INIT_SETS
            .get(set.min(NUM_INIT_SETS - 1))
            .copied()
            .unwrap_or_default();
        EncModel {
            ria: 256 * (sh0 & 3) as u16 + (a as i32 + 128) as u8 as u16,
            rbo: 4096 * (sh1.saturating_sub(4) & 3) as u16
                + (p as i32 - 16 * a as i32 + 2048) as u16,
        }
    }
}

/// One model per context number a [`Flat`] entry can hold (15 bits), so that indexing by an
/// entry needs no bounds check (and the hot loop no register for a length).
type ReplayModels = [EncModel; 1 << 15];

/// A zeroed [`ReplayModels`], built on the heap.
fn new_replay_models() -> Box<ReplayModels> {
    let v = vec![EncModel::default(); 1 << 15].into_boxed_slice();
    match v.try_into() {
        Ok(b) => b,
        // The length is right, so this is never taken.
        Err(_) => Box::new([EncModel::default(); 1 << 15]),
    }
}

/// Codes the bins recorded by [`Flat`] with contexts `models`.
// Out of line, with the coder's registers in a local: inlined into the encode, its loop
// reloaded spilled pointers from the stack on every bin.
#[inline(never)]
fn replay(regs: &mut EncState, out: &mut EncOut, models: &mut ReplayModels, flat: &[u16]) {
    let mut st = *regs;
    let mut it = flat.iter();
    while let Some(&e) = it.next() {
        if e < BYPASS {
            let bin = (e & 1) as usize;
            // `e >> 1 < 2^15`: the fallback is dead code.
            let Some(m) = models.get_mut((e >> 1) as usize) else {
                continue;
            };
            let (ria, rbo) = (m.ria as usize, m.rbo as usize);
            let pp = 16 * (ria & 255) as u32 + (rbo & 4095) as u32; // p + 4096
            st.encode_with_q(out, bin as u32 != (pp >> 12) & 1, pp >> 7);
            // `bin` is one bit and the rows are masked: the fallbacks are dead code.
            let Some(tb) = BIN_TABLES.get(bin) else {
                continue;
            };
            m.ria = tb.next_ria.get(ria & 1023).copied().unwrap_or(0);
            m.rbo = tb.next_rbo.get(rbo & 0x3FFF).copied().unwrap_or(0);
        } else {
            let hi = it.next().copied().unwrap_or(0) as u32;
            let lo = it.next().copied().unwrap_or(0) as u32;
            st.encode_bypass_bits(out, hi << 16 | lo, (e & 63) as u32);
        }
    }
    *regs = st;
}

/// Binarizes and codes `levels` (the encode without a trial pass); returns whether every bin's
/// context was in `ctx` and the number of bins.
// Out of line: inlined beside the trial pass's replay, its loop ran ~3 % more instructions
// (register allocation of the larger function).
#[inline(never)]
fn encode_direct(
    st: &mut EncState,
    out: &mut EncOut,
    ctx: &mut [ContextModel],
    levels: &[i32],
    params: &LayerParams,
) -> (bool, u64) {
    encode_direct_from(st, out, ctx, levels, params, (0, 0))
}

/// [`encode_direct`] of levels that follow others: `walk` is the trellis state and the previous
/// coded level after those.
#[inline(never)]
fn encode_direct_from(
    st: &mut EncState,
    out: &mut EncOut,
    ctx: &mut [ContextModel],
    levels: &[i32],
    params: &LayerParams,
    walk: (u32, i64),
) -> (bool, u64) {
    let mut w = Writer {
        st: *st,
        out,
        ctx,
        bins: 0,
        missed: false,
    };
    encode_levels(&mut w, levels, params.layout(), params, walk);
    *st = w.st;
    (!w.missed, w.bins)
}

/// The level loop of [`encode_layer`].
#[inline(always)]
fn encode_levels(
    w: &mut Writer<'_>,
    levels: &[i32],
    layout: ContextLayout,
    params: &LayerParams,
    walk: (u32, i64),
) {
    let g = params.num_gtx_flags;
    if params.dq_flag {
        let (mut state, mut prev) = walk;
        for &r in levels {
            let level = coded_level(r as i64, state);
            binarize(w, layout, g, level, state, prev);
            prev = level;
            state = next_state(state, level);
        }
    } else {
        let mut prev = walk.1;
        for &r in levels {
            let level = r as i64;
            binarize(w, layout, g, level, 0, prev);
            prev = level;
        }
    }
}

/// Upper bound on the levels a stream of `bytes` bytes can hold: a bin consumes at least
/// 1/128 of a bit (the range loses at least 2 of 510 per bin), so this bounds allocation.
fn max_levels_for(bytes: usize) -> usize {
    bytes.saturating_add(4).saturating_mul(8 * 128)
}

/// Decodes one layer's payload from `dec` (spec §6.3), appending to `out`.
pub(crate) fn decode_layer<B: AsRef<[u8]>>(
    dec: &mut ArithDecoder<B>,
    scratch: &mut Scratch,
    shape: &[usize],
    params: &LayerParams,
    out: &mut Vec<i32>,
) -> Result<()> {
    params.validate()?;
    let (n, width) = shape_info(shape)?;
    let layout = params.layout();
    if has_header_flags(params, n, width) {
        if params.parent_node_id_present_flag && dec.decode_bypass() != 0 {
            return Err(Error::Corrupt(
                "history-dependent significance (HDSP) is not supported",
            ));
        }
        if dec.decode_bypass() != 0 {
            return Err(Error::Corrupt("row skipping is not supported"));
        }
    }
    scratch.reset(layout.len());
    let ctx = &mut scratch.ctx;
    let e_ctx = layout.init_flag();
    for c in layout.signalled(params.dq_flag) {
        let e = if dec.decode_bin(model(ctx, e_ctx)?) != 0 {
            1 + dec.decode_bypass_bits(3)
        } else {
            0
        };
        *model(ctx, c)? = ContextModel::new(e as usize);
    }
    dec.check()?;
    let remaining = dec.remaining();
    // The claimed count is capped by what the remaining bytes can hold, and a failed allocation
    // (that cap can still be 4096 times the input) is an error rather than an abort.
    out.try_reserve(n.min(max_levels_for(remaining)))
        .map_err(|_| Error::Overflow(format!("cannot allocate room for {n} levels")))?;
    let mut models = core::mem::take(&mut scratch.dec);
    models.clear();
    models.extend(ctx.iter().map(|&m| DecModel::from(m)));
    let (data, st) = dec.parts();
    let mut regs = *st;
    let ctx = &mut models[..];
    let res = if params.dq_flag {
        decode_levels::<true>(data, &mut regs, ctx, layout, n, out)
    } else {
        decode_levels::<false>(data, &mut regs, ctx, layout, n, out)
    };
    *st = regs;
    scratch.dec = models;
    res
}

/// Levels decoded between checks for a truncated stream, and the step by which the output
/// grows. The output is zero-filled ahead of the decoder, so a zero level costs no store.
/// Checking once per chunk is enough: past the end of the data a level still takes a bounded
/// number of bins, and any error met there is reported as the truncation it follows.
const CHUNK: usize = 1 << 14;

/// The level loop of [`decode_layer`], with the decoder's registers in locals.
#[inline(always)]
fn decode_levels<const DQ: bool>(
    data: &[u8],
    st: &mut DecState,
    ctx: &mut [DecModel],
    layout: ContextLayout,
    n: usize,
    out: &mut Vec<i32>,
) -> Result<()> {
    let mut walk = (0u32, 0i64);
    let mut left = n;
    while left > 0 {
        let k = left.min(CHUNK);
        let start = out.len();
        out.try_reserve(k)
            .map_err(|_| Error::Overflow(format!("cannot allocate room for {n} levels")))?;
        out.resize(start + k, 0);
        let buf = out.get_mut(start..).unwrap_or_default();
        let res = decode_chunk::<DQ>(data, st, ctx, layout, buf, &mut walk);
        if st.overrun(data) {
            return Err(Error::Truncated);
        }
        res?;
        left -= k;
    }
    Ok(())
}

/// [`decode_nonzero`] out of line: with the decoder's registers in locals of a small function,
/// they stay in machine registers through the bin loops (inlined into the level loop, they
/// were spilled to the stack on every bin).
#[inline(never)]
fn nonzero(
    data: &[u8],
    st: &mut DecState,
    ctx: &mut [DecModel],
    layout: ContextLayout,
    nb: u32,
) -> Result<i64> {
    let mut regs = *st;
    let level = decode_nonzero(data, &mut regs, ctx, layout, nb);
    *st = regs;
    level
}

/// Decodes `buf.len()` levels into the zero-filled `buf`; `walk` is the trellis state and the
/// previous level, carried from chunk to chunk.
#[inline(always)]
fn decode_chunk<const DQ: bool>(
    data: &[u8],
    st: &mut DecState,
    ctx: &mut [DecModel],
    layout: ContextLayout,
    buf: &mut [i32],
    walk: &mut (u32, i64),
) -> Result<()> {
    let (mut state, mut prev) = *walk;
    let len = buf.len();
    let mut i = 0;
    while i < len {
        let level = if prev == 0 {
            // A run of zeros codes its significance flags on the contexts of a zero neighbour
            // (one context without the trellis), so the model stays in registers between bins.
            let mut c = layout.sig(state, 0);
            let mut m = *model(ctx, c)?;
            loop {
                // The model after a 0 is computed while the bin is decided: in the run, the
                // next bin needs it at once. A 1 ends the run; its update is off that path.
                let after_zero = m.next(0);
                if st.decide(data, &m) != 0 {
                    m.update(1);
                    break;
                }
                m = after_zero;
                i += 1;
                if DQ {
                    let next = next_state(state, 0);
                    if next != state {
                        *model(ctx, c)? = m;
                        state = next;
                        c = layout.sig(state, 0);
                        m = *model(ctx, c)?;
                    }
                }
                if i == len {
                    *model(ctx, c)? = m;
                    *walk = (state, 0);
                    return Ok(());
                }
            }
            *model(ctx, c)? = m;
            decode_nonzero(data, st, ctx, layout, 0)?
        } else {
            let nb = neighbour_class(prev);
            let m = model(ctx, layout.sig(state, nb))?;
            // A model at its fixed point has seen a long run of its MPS: then the flag is
            // predictable (dense layers), otherwise it is decoded without a branch.
            let sig = if m.fixed() {
                m.decode_predictable(st, data)
            } else {
                m.decode(st, data)
            };
            if sig == 0 {
                0
            } else if prev.unsigned_abs() > 2 {
                // Among large levels the bins of a level outweigh a call: out of line, the
                // coder's registers stay in machine registers (see `nonzero`).
                nonzero(data, st, ctx, layout, nb)?
            } else {
                decode_nonzero(data, st, ctx, layout, nb)?
            }
        };
        if level != 0 {
            let r = if DQ {
                let r = reconstruction_index(level, state);
                i32::try_from(r)
                    .map_err(|_| Error::Corrupt("reconstruction index exceeds int32"))?
            } else {
                // `decode_nonzero` only returns levels within int32.
                level as i32
            };
            if let Some(x) = buf.get_mut(i) {
                *x = r;
            }
        }
        if DQ {
            state = next_state(state, level);
        }
        prev = level;
        i += 1;
    }
    *walk = (state, prev);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shape_rules() {
        assert_eq!(shape_info(&[]).unwrap(), (1, 1));
        assert_eq!(shape_info(&[50]).unwrap(), (50, 1));
        assert_eq!(shape_info(&[16, 9]).unwrap(), (144, 9));
        assert_eq!(shape_info(&[0, 5]).unwrap(), (0, 5));
        assert_eq!(shape_info(&[8, 3, 3, 3]).unwrap(), (216, 27));
        assert!(shape_info(&[5, 0]).is_err());
        assert!(shape_info(&[usize::MAX, 2]).is_err());
    }

    #[test]
    fn dq_index_mapping_round_trips_valid_indices() {
        for state in 0..8u32 {
            for r in -20i64..=20 {
                let valid = r == 0 || (r & 1) as u32 == (state & 1);
                let l = coded_level(r, state);
                if valid {
                    assert_eq!(reconstruction_index(l, state), r, "state {state} r {r}");
                }
            }
        }
        // Both forms equal the spec's case analysis.
        let spec = |r: i64, q: i64| match r.signum() {
            1 => (r + q) >> 1,
            -1 => (r - q) >> 1,
            _ => 0,
        };
        let extremes = [
            i32::MIN as i64,
            i32::MIN as i64 + 1,
            i32::MAX as i64 - 1,
            i32::MAX as i64,
        ];
        for r in (-300i64..=300).chain(extremes) {
            for state in 0..8u32 {
                let want = spec(r, (state & 1) as i64);
                assert_eq!(coded_level(r, state), want, "r {r} state {state}");
                assert_eq!(
                    coded_level_branchless(r, state),
                    want,
                    "r {r} state {state}"
                );
            }
        }
        // Quirks listed in spec §6.2.
        assert_eq!(coded_level(3, 0), 1);
        assert_eq!(coded_level(1, 0), 0);
        assert_eq!(coded_level(-1, 0), -1);
        assert_eq!(coded_level(2, 1), 1);
    }

    /// The trial pass of spec §8 written directly: nine models per context in lockstep.
    fn reference_trial(levels: &[i32], params: &LayerParams) -> Vec<[u64; NUM_INIT_SETS]> {
        struct Trial {
            models: Vec<[ContextModel; NUM_INIT_SETS]>,
            acc: Vec<[u64; NUM_INIT_SETS]>,
        }
        impl BinSink for Trial {
            fn regular(&mut self, ctx: usize, bin: u32) {
                for e in 0..NUM_INIT_SETS {
                    self.acc[ctx][e] += self.models[ctx][e].est_bits(bin) as u64;
                    self.models[ctx][e].update(bin);
                }
            }
            fn bypass(&mut self, _value: u32, _n: u32) {}
        }
        let layout = params.layout();
        let mut t = Trial {
            models: vec![core::array::from_fn(ContextModel::new); layout.len()],
            acc: vec![[0; NUM_INIT_SETS]; layout.len()],
        };
        let (mut state, mut prev) = (0u32, 0i64);
        for &x in levels {
            let x = x as i64;
            binarize(&mut t, layout, params.num_gtx_flags, x, state, prev);
            prev = x;
            if params.dq_flag {
                state = next_state(state, coded_level(x, state));
            }
        }
        t.acc
    }

    fn trial_matches_reference(levels: &[i32], params: &LayerParams) {
        let want = reference_trial(levels, params);
        let mut s = Scratch::default();
        let sets = choose_init_sets(levels, params, &mut s);
        let costs = trial_pass(levels, params, &mut Scratch::default());
        let layout = params.layout();
        for c in layout.signalled(params.dq_flag) {
            let got = costs[c].unwrap_or_default();
            assert_eq!(got, want[c], "context {c}");
            let cost = |e: usize| want[c][e] + if e > 0 { 3 * 32768 } else { 0 };
            let best = (1..NUM_INIT_SETS).fold(0, |m, e| if cost(e) < cost(m) { e } else { m });
            assert_eq!(sets[c] as usize, best, "context {c}");
        }
    }

    fn level() -> impl Strategy<Value = i32> {
        prop_oneof![
            8 => Just(0),
            4 => -2i32..=2,
            2 => -40i32..=40,
            1 => any::<i32>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn trial_pass_equals_lockstep_reference(
            levels in proptest::collection::vec(level(), 0..3000),
            dq in any::<bool>(),
            g in 1u32..=40,
        ) {
            let p = LayerParams { dq_flag: dq, num_gtx_flags: g, ..Default::default() };
            trial_matches_reference(&levels, &p);
        }

        #[test]
        fn trial_pass_on_long_skewed_runs(
            runs in proptest::collection::vec((0usize..3000, -3i32..=3), 1..12),
            dq in any::<bool>(),
        ) {
            let levels: Vec<i32> = runs.iter().flat_map(|&(n, v)| std::iter::repeat(v).take(n)).collect();
            let p = LayerParams { dq_flag: dq, num_gtx_flags: 3, ..Default::default() };
            trial_matches_reference(&levels, &p);
        }

        /// Dense layers: large magnitudes (long runs of 1s on the greater-than flags and first
        /// prefix bins, which saturate every trial model), broken by runs of small levels.
        #[test]
        fn trial_pass_on_dense_levels(
            runs in proptest::collection::vec((0usize..2500, 0i32..=3, 1i32..=600), 1..8),
            dq in any::<bool>(),
            g in 1u32..=12,
            seed in any::<u64>(),
        ) {
            let mut s = seed | 1;
            let mut levels = Vec::new();
            for &(n, kind, mag) in &runs {
                for _ in 0..n {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    let sign = if s & 1 == 0 { 1 } else { -1 };
                    let x = match kind {
                        0 => mag,                                 // one value: pure runs
                        1 => sign * mag,                          // random signs
                        2 => sign * (mag + (s >> 8) as i32 % 40), // jitter: the prefix bins vary
                        _ => sign * ((s >> 8) % 3) as i32,        // small levels
                    };
                    levels.push(x);
                }
            }
            let p = LayerParams { dq_flag: dq, num_gtx_flags: g, ..Default::default() };
            trial_matches_reference(&levels, &p);
        }

        /// The costs of one context's bins: runs of either value, long enough to bring every
        /// set's model to its fixed point and to cross words, broken by short noise.
        #[test]
        fn trial_costs_on_runs_equal_lockstep_models(
            runs in proptest::collection::vec((any::<bool>(), 0usize..2000, any::<u8>()), 1..10),
        ) {
            let mut bins = Vec::new();
            for &(v, n, noise) in &runs {
                bins.extend(std::iter::repeat(v as u32).take(n));
                bins.extend((0..noise % 5).map(|i| ((noise >> i) & 1) as u32));
            }
            check_costs(&bins);
        }
    }

    /// Compares [`trial_costs`] with nine models stepped over `bins`.
    fn check_costs(bins: &[u32]) {
        let mut models: [ContextModel; NUM_INIT_SETS] = core::array::from_fn(ContextModel::new);
        let mut want = [0u64; NUM_INIT_SETS];
        for &b in bins {
            for (m, w) in models.iter_mut().zip(want.iter_mut()) {
                *w += m.est_bits(b) as u64;
                m.update(b);
            }
        }
        let mut r = BinRecord::new();
        r.reset(1);
        for &b in bins {
            r.push_if(0, b, 1);
        }
        // Fed to the models a few words at a time while recording (every `FEED_WORDS` words).
        assert_eq!(r.costs(0).unwrap_or_default(), want, "{} bins", bins.len());
        // All words at once.
        let words: Vec<u64> = bins
            .chunks_exact(WORD_BINS as usize)
            .map(|w| w.iter().rev().fold(0, |acc, &b| acc << 1 | b as u64))
            .collect();
        let rest = &bins[words.len() * WORD_BINS as usize..];
        let last = rest.iter().rev().fold(0, |acc, &b| acc << 1 | b as u64);
        assert_eq!(trial_costs(&words, last, rest.len() as u32), want);
    }

    #[test]
    fn trial_costs_follow_runs_to_every_fixed_point_and_back() {
        // Each set's model run to its fixed point for 1, then for 0, and back; with one bin of
        // the other value at every offset in a word, and run lengths around the skip threshold.
        for len in [MIN_SKIP - 1, MIN_SKIP, MIN_SKIP + 1, 63, 64, 200, 5000] {
            for v in [0u32, 1] {
                let mut bins: Vec<u32> = Vec::new();
                for k in 0..70 {
                    bins.extend(std::iter::repeat(v).take(len as usize + k));
                    bins.push(1 - v);
                }
                bins.extend(std::iter::repeat(1 - v).take(3000));
                bins.extend(std::iter::repeat(v).take(3000));
                check_costs(&bins);
            }
        }
    }

    /// A [`Record`] that keeps what it is sent, skipping bins sent with `valid` 0.
    #[derive(Default)]
    struct Log(Vec<(Option<usize>, u32, u32)>);
    impl BinSink for Log {
        fn regular(&mut self, ctx: usize, bin: u32) {
            self.0.push((Some(ctx), bin, 1));
        }
        fn bypass(&mut self, value: u32, n: u32) {
            self.0.push((None, value, n));
        }
    }
    impl Record for Log {
        fn regular_if(&mut self, ctx: usize, bin: u32, valid: u32) {
            assert!(valid == 1 || bin == 0, "a skipped bin must be 0");
            if valid == 1 {
                self.regular(ctx, bin);
            }
        }
    }

    #[test]
    fn record_emits_the_bins_of_binarize() {
        let mut levels: Vec<i64> = (-70..=70).collect();
        levels.extend([i32::MIN as i64, i32::MAX as i64, 1 << 20, -(1 << 20) - 3]);
        for g in [1u32, 2, 3, 11, 40] {
            let layout = ContextLayout::new(g);
            for &level in &levels {
                for (state, prev) in [(0, 0), (3, -2), (6, 5), (7, 0)] {
                    let (mut want, mut got) = (Log::default(), Log::default());
                    binarize(&mut want, layout, g, level, state, prev);
                    record::<1, _>(&mut got, layout, g, level, state, prev);
                    assert_eq!(got.0, want.0, "g {g} level {level} state {state}");
                    let mut got2 = Log::default();
                    record::<2, _>(&mut got2, layout, g, level, state, prev);
                    assert_eq!(got2.0, want.0, "K 2, g {g} level {level} state {state}");
                }
            }
        }
    }

    #[test]
    fn flat_record_replays_to_the_direct_encode() {
        // Levels with bypass runs (magnitudes past G + 1) and a record that must grow; the long
        // layer crosses the record's budget (small in tests), the short one does not.
        let long: Vec<i32> = (0..20_000)
            .map(|i: i32| match i % 7 {
                0 => 0,
                1 => (i % 100) - 50,
                2 => -(1 << (i % 31)),
                3 => i32::MAX - i,
                _ => (i % 3) - 1,
            })
            .collect();
        for levels in [&long[..], &long[..100]] {
            for dq_flag in [false, true] {
                let p = LayerParams {
                    dq_flag,
                    num_gtx_flags: 3,
                    ..Default::default()
                };
                let mut s = Scratch::default();
                let sets = choose_init_sets(levels, &p, &mut s);
                assert_eq!(s.flat_levels < levels.len(), levels.len() == long.len());
                // The replayed bins, then the rest recorded and replayed a budget at a time,
                // equal a direct encode with the same sets, and so do the counts.
                let fresh = || -> Vec<ContextModel> {
                    sets.iter()
                        .map(|&e| ContextModel::new(e as usize))
                        .collect()
                };
                let mut direct = ArithEncoder::new();
                let mut ctx = fresh();
                let (ok, bins) = {
                    let (st, out) = direct.parts();
                    encode_direct(st, out, &mut ctx, levels, &p)
                };
                assert!(ok);
                let mut replayed = ArithEncoder::new();
                let mut models = new_replay_models();
                for (m, &e) in models.iter_mut().zip(&sets) {
                    *m = EncModel::new(e as usize);
                }
                let (st, out) = replayed.parts();
                replay(st, out, &mut models, &s.flat[..s.flat_len]);
                let rest = &levels[s.flat_levels..];
                let mut buf = Vec::new();
                let rest_bins = replay_rest(st, out, &mut models, &mut buf, rest, &p, s.flat_walk);
                assert_eq!(bins, s.flat_bins + rest_bins);
                assert_eq!(replayed.finish(), direct.finish(), "dq {dq_flag}");
            }
        }
    }

    #[test]
    fn next_estimate_tables_follow_the_spec_update() {
        use crate::tables::CURVE;
        for (bin, tb) in BIN_TABLES.iter().enumerate() {
            let sgn = if bin == 1 { 1 } else { -1 };
            for sh in 0..4usize {
                for b in -1923i32..=1923 {
                    let want = b + sgn * (CURVE[(16 + ((sgn * b) >> 7)) as usize] >> (sh + 4));
                    let bo = 4096 * sh + (b + 2048) as usize;
                    assert_eq!(tb.next_bo[bo] as i32, want + 2048);
                    assert_eq!(tb.next_rbo[bo] as usize, 4096 * sh + (want + 2048) as usize);
                }
                for a in -123i32..=123 {
                    let want = a + sgn * (CURVE[(16 + ((sgn * a) >> 3)) as usize] >> (sh + 4));
                    assert_eq!(tb.next_ia[256 * sh + (a + 128) as usize] as i32, want + 128);
                    let ria = tb.next_ria[256 * sh + (a + 128) as usize] as usize;
                    assert_eq!(ria, 256 * sh + (want + 128) as usize);
                }
            }
        }
    }

    #[test]
    fn bin_record_returns_what_was_pushed() {
        let mut r = BinRecord::new();
        for len in [0usize, 1, 62, 63, 64, 126, 127, 200] {
            r.reset(3);
            let want: Vec<u32> = (0..len)
                .map(|i| ((i * 7 + i / 5) % 3 == 0) as u32)
                .collect();
            for (i, &b) in want.iter().enumerate() {
                r.push_if(1, b, 1);
                r.push_if(1, 1, 0); // not recorded
                r.push_if(2, (i % 2) as u32, 1);
            }
            let (words, last, n) = r.bins(1);
            let mut got = Vec::new();
            for &w in words {
                got.extend((0..WORD_BINS).map(|i| ((w >> i) & 1) as u32));
            }
            got.extend((0..n).map(|i| ((last >> i) & 1) as u32));
            // The first full words went to the trial models, `FEED_WORDS` at a time.
            let fed = (len / WORD_BINS as usize) / FEED_WORDS * FEED_WORDS * WORD_BINS as usize;
            assert_eq!(got, want[fed..], "len {len}");
            assert_eq!(r.bins(0), (&[][..], 0, 0));
        }
    }

    #[test]
    fn init_set_choice_prefers_zero_on_ties() {
        let mut s = Scratch::default();
        let p = LayerParams {
            dq_flag: false,
            ..Default::default()
        };
        let sets = choose_init_sets(&[], &p, &mut s);
        assert!(sets.iter().all(|&e| e == 0));
        let zeros = vec![0i32; 10_000];
        let sets = choose_init_sets(&zeros, &p, &mut s);
        // A long run of zeros favours a set that starts biased towards 0 for the sig context.
        assert_ne!(sets[0], 0);
        assert_eq!(sets[48], 0);
    }
}
