//! Choice of a layer's number of greater-than flags `G` (NNC's `cabac_unary_length`).
//!
//! Any `G >= 1` codes the same levels; the decoder reads it with the layer's other parameters.
//! NNCodec always uses 11. In dense layers (most magnitudes past `G`) every flag is a 1 that
//! still costs the estimator's floor (about 0.012 bit) and a decoded bin, so `G = 1` is smaller
//! and decodes about 1.4× faster; layers whose magnitudes sit just above 1 gain from more flags.
//!
//! [`choose_num_gtx_flags`] prices every `G` in `1..=MAX_CHOSEN_GTX` from one histogram of the
//! magnitudes, with a static model of the adaptive coder: each context's bins cost their
//! entropy (or a saturated estimator's costs) plus a small overhead per bin and per context.
//! Only the bins that depend on `G` are priced (the greater-than flags, the remainder prefix and
//! its bypass bins). The sums are integers, so the choice is the same on every platform.

use crate::layer::{coded_level_branchless, next_state};

/// Largest `G` the choice considers: NNCodec's, so that no layer decodes more bins than it would
/// there. Up to 16 flags saved at most 0.2 % more on the layers we measured (ResNet-56 at qp
/// −23, where many layers chose 16) and decoded 5 % slower.
pub const MAX_CHOSEN_GTX: u32 = 11;

/// Magnitudes below this are counted one by one; larger ones by their remainder's prefix length.
const CAP: usize = 4096;

/// Fixed-point scale of the costs: bits × 2^16.
const ONE: u64 = 1 << 16;

/// What an adaptive context costs per bin beyond the cross-entropy below: 0.003–0.010 bit on
/// Bernoulli sources of probability 0.5–0.99 with the best of the nine initialisation sets
/// (slow shifts adapt with little noise).
const BIN_OVERHEAD: u64 = 197; // 0.003 bit

/// The estimator's most probable symbol can cost no less than 404/32768 bit (its probability
/// saturates); the least probable one then costs 225352/32768 bit. Sources more skewed than
/// that pay these, in 2^-16 bit.
const FLOOR_MPS: u64 = 808;
const FLOOR_LPS: u64 = 450_704;
/// The least probable symbol's frequency below which the floor applies (0.0085 × 2^16).
const FLOOR_FREQ: u64 = 556;

/// `log2(x)` in 16.16 fixed point, rounded down (`x >= 1`; 0 for 0), by repeated squaring of
/// the normalised mantissa.
fn log2_fixed(x: u64) -> u64 {
    if x == 0 {
        return 0;
    }
    let int = 63 - x.leading_zeros() as u64;
    // Mantissa in [1, 2) as 1.31 fixed point.
    let mut m: u64 = if int >= 31 {
        x >> (int - 31)
    } else {
        x << (31 - int)
    };
    let mut frac = 0u64;
    for bit in (0..16).rev() {
        m = (m * m) >> 31;
        if m >= 1 << 32 {
            m >>= 1;
            frac |= 1 << bit;
        }
    }
    (int << 16) | frac
}

/// Cost of one context that codes `n0` zeros and `n1` ones (bits × 2^16): the entropy of its
/// bins, or the saturated estimator's costs for more skewed ones, plus the overheads.
fn context_cost(n0: u64, n1: u64) -> u128 {
    let n = n0 + n1;
    if n == 0 {
        return 0;
    }
    let ln = log2_fixed(n);
    let (lps, mps) = (n0.min(n1), n0.max(n1));
    let bins = if (lps as u128) << 16 < FLOOR_FREQ as u128 * n as u128 {
        mps as u128 * FLOOR_MPS as u128 + lps as u128 * FLOOR_LPS as u128
    } else {
        let part = |k: u64| k as u128 * (ln - log2_fixed(k)) as u128;
        part(n0) + part(n1)
    };
    // An adaptive context also pays for learning its probability: about log2(n) / 2 bits.
    bins + n as u128 * BIN_OVERHEAD as u128 + (ln / 2 + ONE) as u128
}

/// Magnitudes of a layer's coded levels.
struct Magnitudes {
    /// `above[s][k]`: levels of sign `s` (1 negative) whose magnitude is above `k`, for
    /// `k <= MAX_CHOSEN_GTX`.
    above: [[u64; MAX_CHOSEN_GTX as usize + 1]; 2],
    /// `at_most[a]`: levels whose magnitude is at most `a`, for `a <` [`CAP`].
    at_most: Vec<u64>,
    /// `large[g][m]`: levels of magnitude `|L| >=` [`CAP`] with `floor(log2(|L| - g)) = m`.
    large: [[u64; 64]; MAX_CHOSEN_GTX as usize + 1],
}

impl Magnitudes {
    fn new(levels: &[i32], dq_flag: bool) -> Self {
        let mut hist = [vec![0u64; CAP], vec![0u64; CAP]];
        let mut large = [[0u64; 64]; MAX_CHOSEN_GTX as usize + 1];
        let mut large_by_sign = [0u64; 2];
        let mut state = 0;
        for &x in levels {
            let level = if dq_flag {
                let l = coded_level_branchless(x as i64, state);
                state = next_state(state, l);
                l
            } else {
                x as i64
            };
            let (abs, neg) = (level.unsigned_abs(), level < 0);
            match hist[neg as usize].get_mut(abs as usize) {
                Some(c) => *c += 1,
                None => {
                    large_by_sign[neg as usize] += 1;
                    for (g, row) in large.iter_mut().enumerate() {
                        let m = 63 - (abs - g as u64).leading_zeros() as usize;
                        if let Some(c) = row.get_mut(m) {
                            *c += 1;
                        }
                    }
                }
            }
        }
        let mut above = [[0u64; MAX_CHOSEN_GTX as usize + 1]; 2];
        for ((row, h), big) in above.iter_mut().zip(&hist).zip(large_by_sign) {
            let mut acc = big + h.iter().skip(MAX_CHOSEN_GTX as usize + 1).sum::<u64>();
            for k in (0..=MAX_CHOSEN_GTX as usize).rev() {
                if let Some(slot) = row.get_mut(k) {
                    *slot = acc;
                }
                acc += h.get(k).copied().unwrap_or(0);
            }
        }
        let [pos, neg] = hist;
        let at_most = pos
            .iter()
            .zip(&neg)
            .scan(0, |acc, (p, n)| {
                *acc += p + n;
                Some(*acc)
            })
            .collect();
        Magnitudes {
            above,
            at_most,
            large,
        }
    }

    /// Levels of magnitude in `lo..hi` below [`CAP`].
    fn between(&self, lo: usize, hi: usize) -> u64 {
        let count = |a: usize| match a.checked_sub(1) {
            Some(i) => self.at_most.get(i.min(CAP - 1)).copied().unwrap_or(0),
            None => 0,
        };
        count(hi).saturating_sub(count(lo))
    }

    /// Cost of the bins that depend on `G`: greater-than flags, remainder prefix and suffix.
    fn cost(&self, g: u32) -> u128 {
        let mut total = 0u128;
        // Flag k (0-based) of each sign is coded for magnitudes above k and is 1 above k + 1.
        for row in &self.above {
            for k in 0..g as usize {
                let coded = row.get(k).copied().unwrap_or(0);
                let ones = row.get(k + 1).copied().unwrap_or(0);
                total += context_cost(coded - ones, ones);
            }
        }
        // Remainder of magnitudes above G: a prefix of `m` ones and a zero on contexts 0..=m,
        // then `m` bypass bins, where `m = floor(log2(|L| - G))`.
        let g = g as usize;
        let large = self.large.get(g).copied().unwrap_or([0; 64]);
        let by_m: [u64; 64] = core::array::from_fn(|m| {
            let small = if m < 13 {
                self.between(g + (1 << m), g + (2 << m))
            } else {
                0
            };
            small + large.get(m).copied().unwrap_or(0)
        });
        let mut reaching = by_m.iter().sum::<u64>();
        for (m, &count) in by_m.iter().enumerate() {
            if reaching == 0 {
                break;
            }
            total += context_cost(count, reaching - count);
            total += (m as u64 * count) as u128 * ONE as u128;
            reaching -= count;
        }
        total
    }
}

/// The number of greater-than flags in `1..=MAX_CHOSEN_GTX` that codes `levels` in the fewest
/// estimated bits (the smallest such `G` on a tie). `levels` are what the encoder is given:
/// reconstruction indices when `dq_flag` is set.
pub fn choose_num_gtx_flags(levels: &[i32], dq_flag: bool) -> u32 {
    let hist = Magnitudes::new(levels, dq_flag);
    (1..=MAX_CHOSEN_GTX)
        .map(|g| (hist.cost(g), g))
        .min()
        .map_or(1, |(_, g)| g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::coded_level;
    use crate::{Decoder, Encoder, LayerParams};
    use proptest::prelude::*;

    /// Rounded Laplacian levels of scale `scale`.
    fn laplacian(n: usize, scale: f64, seed: u64) -> Vec<i32> {
        let w = crate::trellis::tests::lap(n, scale, seed);
        w.iter().map(|x| x.round() as i32).collect()
    }

    /// The layer's parameters and its stream, coded with `g` flags.
    fn coded(levels: &[i32], dq: bool, g: u32) -> (LayerParams, Vec<u8>) {
        let p = LayerParams {
            dq_flag: dq,
            num_gtx_flags: g,
            general_profile_idc: 0,
            ..LayerParams::default()
        };
        let mut enc = Encoder::new();
        enc.encode_layer(levels, &[levels.len()], &p, true).unwrap();
        (p, enc.finish())
    }

    fn coded_size(levels: &[i32], dq: bool, g: u32) -> usize {
        coded(levels, dq, g).1.len()
    }

    #[test]
    fn log2_is_exact_to_the_last_fraction_bit() {
        for x in (1..5000u64).chain([1 << 20, 3 << 40, u64::MAX / 3, u64::MAX]) {
            let want = ((x as f64).log2() * 65536.0).floor() as i64;
            let got = log2_fixed(x) as i64;
            assert!((got - want).abs() <= 1, "log2({x}): {got} vs {want}");
        }
        assert_eq!(log2_fixed(1), 0);
        assert_eq!(log2_fixed(1 << 33), 33 << 16);
    }

    #[test]
    fn skewed_contexts_cost_the_estimators_floor() {
        // A run of ones costs the floor per bin, not zero entropy.
        let run = context_cost(0, 1000);
        assert!(run >= 1000 * FLOOR_MPS as u128);
        // Balanced bins cost about a bit each.
        let half = context_cost(500, 500) as f64 / ONE as f64;
        assert!((1000.0..1010.0).contains(&half), "{half}");
        assert_eq!(context_cost(0, 0), 0);
    }

    #[test]
    fn dense_layers_take_one_flag_and_small_magnitudes_take_more() {
        // Magnitudes of a few hundred (a near-lossless qp): every flag would be a 1.
        let dense: Vec<i32> = laplacian(20_000, 150.0, 1);
        assert_eq!(choose_num_gtx_flags(&dense, false), 1);
        // Magnitudes around 8 with a geometric tail: the flags model it better than the
        // Exp-Golomb remainder does.
        let mid = laplacian(100_000, 8.0, 2);
        assert!(choose_num_gtx_flags(&mid, false) >= 8);
        // Nothing to price: the smallest G.
        assert_eq!(choose_num_gtx_flags(&[], false), 1);
        assert_eq!(choose_num_gtx_flags(&[0; 100], true), 1);
    }

    #[test]
    fn the_choice_codes_no_larger_than_nncodecs_eleven_flags() {
        for (n, scale, dq) in [
            (50_000, 0.6, false),
            (50_000, 3.0, false),
            (50_000, 8.0, true),
            (20_000, 40.0, false),
            (20_000, 300.0, true),
        ] {
            let levels = laplacian(n, scale, 7);
            let g = choose_num_gtx_flags(&levels, dq);
            let (chosen, eleven) = (coded_size(&levels, dq, g), coded_size(&levels, dq, 11));
            let best = (1..=MAX_CHOSEN_GTX)
                .map(|g| coded_size(&levels, dq, g))
                .min()
                .unwrap();
            // Within 0.1 % of NNCodec's size and 0.3 % of the best G's.
            assert!(
                chosen * 1000 <= eleven * 1001,
                "{scale}: G {g} {chosen} vs {eleven}"
            );
            assert!(
                chosen * 1000 <= best * 1003,
                "{scale}: G {g} {chosen} vs best {best}"
            );
        }
    }

    fn level() -> impl Strategy<Value = i32> {
        prop_oneof![
            -3..=3i32,
            -5000..=5000i32,
            Just(i32::MIN),
            Just(i32::MAX),
            any::<i32>(),
        ]
    }

    proptest! {
        #[test]
        fn any_levels_get_a_valid_g_that_round_trips(
            levels in proptest::collection::vec(level(), 0..400),
            dq in any::<bool>(),
        ) {
            let g = choose_num_gtx_flags(&levels, dq);
            prop_assert!((1..=MAX_CHOSEN_GTX).contains(&g));
            // The trellis choice prices the coded levels, as the plain choice of those does.
            if dq {
                let mut state = 0;
                let coded: Vec<i32> = levels
                    .iter()
                    .map(|&x| {
                        let l = coded_level(x as i64, state);
                        state = next_state(state, l);
                        l as i32
                    })
                    .collect();
                prop_assert_eq!(choose_num_gtx_flags(&coded, false), g);
            } else {
                let (p, bytes) = coded(&levels, false, g);
                let mut dec = Decoder::new(&bytes[..]).unwrap();
                prop_assert_eq!(dec.decode_layer(&[levels.len()], &p).unwrap(), levels);
            }
        }
    }
}
