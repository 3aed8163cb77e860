//! Quantization of float32 weights to levels and back (spec §10), bit-exact with NNCodec's
//! `quantLayer` / `dequantLayer`.
//!
//! Three quantizers, chosen like the reference chooses them: plain rounding (`dq_flag = 0`,
//! `lambda_scale ≤ 0`), rate-distortion-optimised rounding (`dq_flag = 0`, `lambda_scale > 0`)
//! and the 8-state trellis ([`crate::trellis`], `dq_flag = 1`). When a level would not fit in
//! int32 the layer is quantized again with a coarser step, and the qp actually used is returned.
//!
//! Beyond the reference, the RDO quantizers take an optional per-weight importance that
//! multiplies each weight's squared error (`Σ wᵢ(xᵢ − x̂ᵢ)² + λ·R`); `None` and all ones give
//! exactly the reference's levels. Plain rounding ignores it: the nearest level minimises every
//! weighted error term on its own.

use crate::error::{Error, Result};
use crate::rate::{RateModel, MAX_NUM_NO_REM};
use crate::trellis::Trellis;

/// Largest accepted `qp_density` (a 3-bit field in NNC's parameter sets).
pub const MAX_QP_DENSITY: u32 = 7;

/// Parameters of `quantLayer`, named as in NNCodec.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantParams {
    /// Dependent (trellis) quantization; levels are then reconstruction indices.
    pub dq_flag: bool,
    /// Quantization parameter: the step size is `2^(qp / 2^qp_density)`, piecewise linear.
    pub qp: i32,
    /// Step sizes per octave are `2^qp_density` (0..=[`MAX_QP_DENSITY`]).
    pub qp_density: u32,
    /// Weight of rate against distortion; ≤ 0 disables the rate model.
    pub lambda_scale: f32,
    /// Greater-than flags of the rate model (NNCodec: `cabac_unary_length_minus1`; the coder
    /// then uses `max_num_no_rem + 1`).
    pub max_num_no_rem: u32,
    /// 0 or 1; no effect on quantization (accepted for parity with the reference).
    pub general_profile_idc: u8,
    /// Only 0 (row-major) is supported.
    pub scan_order: u32,
}

impl Default for QuantParams {
    /// NNCodec's defaults for weights: trellis, qp −38, qp_density 2, no rate term, 10 flags.
    fn default() -> Self {
        QuantParams {
            dq_flag: true,
            qp: -38,
            qp_density: 2,
            lambda_scale: 0.0,
            max_num_no_rem: 10,
            general_profile_idc: 1,
            scan_order: 0,
        }
    }
}

impl QuantParams {
    /// Rejects parameters the quantizer cannot use.
    pub fn validate(&self) -> Result<()> {
        check_qp_density(self.qp_density)?;
        if !self.lambda_scale.is_finite() {
            return Err(Error::InvalidParameter(format!(
                "lambda_scale must be finite, got {}",
                self.lambda_scale
            )));
        }
        if self.max_num_no_rem > MAX_NUM_NO_REM {
            return Err(Error::InvalidParameter(format!(
                "max_num_no_rem must be in 0..={MAX_NUM_NO_REM}, got {}",
                self.max_num_no_rem
            )));
        }
        crate::layer::check_profile_and_scan(self.general_profile_idc, self.scan_order)
    }

    /// Greater-than flags the coder uses for these levels (`max_num_no_rem + 1`).
    pub fn num_gtx_flags(&self) -> u32 {
        self.max_num_no_rem + 1
    }
}

fn check_qp_density(qp_density: u32) -> Result<()> {
    if qp_density > MAX_QP_DENSITY {
        return Err(Error::InvalidParameter(format!(
            "qp_density must be in 0..={MAX_QP_DENSITY}, got {qp_density}"
        )));
    }
    Ok(())
}

/// `2^e` as float64, exactly, for any `e` (0 or infinity outside the float64 range).
fn exp2i(e: i64) -> f64 {
    if e > 1023 {
        f64::INFINITY
    } else if e >= -1022 {
        f64::from_bits(((e + 1023) as u64) << 52)
    } else if e >= -1074 {
        f64::from_bits(1u64 << (e + 1074))
    } else {
        0.0
    }
}

/// Step size Δ of `qp` (spec §10.1): `float32(mul · 2^(shift − qp_density))`.
///
/// Errors when `qp_density` is out of range or Δ is not a normal float32 (qp too small or too
/// large: about −126·2^qp_density ≤ qp < 128·2^qp_density).
pub fn step_size(qp: i32, qp_density: u32) -> Result<f32> {
    check_qp_density(qp_density)?;
    let k = 1i64 << qp_density;
    let mul = k + (qp as i64 & (k - 1));
    let shift = (qp as i64) >> qp_density;
    // mul < 2^8 and the power of two is exact, so the product is exact before the float32 cast.
    let delta = (mul as f64 * exp2i(shift - qp_density as i64)) as f32;
    if !delta.is_normal() {
        return Err(Error::InvalidParameter(format!(
            "qp {qp} with qp_density {qp_density} gives a step size outside the normal float32 range"
        )));
    }
    Ok(delta)
}

/// One reconstruction: `float32(Δ × float32(r))` (spec §10.2).
#[inline(always)]
pub fn dequantize(level: i32, delta: f32) -> f32 {
    delta * level as f32
}

/// `dequantLayer`: the weights of `levels` quantized with `qp` (spec §10.2).
pub fn dequantize_layer(levels: &[i32], qp: i32, qp_density: u32) -> Result<Vec<f32>> {
    let mut out = vec![0.0; levels.len()];
    dequantize_layer_into(levels, qp, qp_density, &mut out)?;
    Ok(out)
}

/// [`dequantize_layer`] into a caller's buffer of the same length.
pub fn dequantize_layer_into(
    levels: &[i32],
    qp: i32,
    qp_density: u32,
    out: &mut [f32],
) -> Result<()> {
    let delta = step_size(qp, qp_density)?;
    if out.len() != levels.len() {
        return Err(Error::InvalidParameter(format!(
            "output has {} elements for {} levels",
            out.len(),
            levels.len()
        )));
    }
    for (o, &l) in out.iter_mut().zip(levels) {
        *o = dequantize(l, delta);
    }
    Ok(())
}

/// Plain rounding (spec §10.3): `round_half_away(float32(w · float32(1/Δ)))`, all in float32.
///
/// Returns [`Error::Overflow`] when a rounded value is outside int32 (−2^31 itself is accepted);
/// non-finite weights are reported the same way ([`quantize_layer`] rejects them first).
pub fn quantize_uniform(weights: &[f32], delta: f32, out: &mut [i32]) -> Result<()> {
    check_lengths(weights.len(), out.len())?;
    let s = 1.0f32 / delta;
    let mut ok = true;
    for (o, &w) in out.iter_mut().zip(weights) {
        let t = w * s;
        // Below 2^23 the fraction `t - trunc(t)` is exact; above, t is an integer. No float32
        // lies in [2^31 - 0.5, 2^31), so checking t before rounding is the same as after.
        ok &= (-2_147_483_648.0..2_147_483_648.0).contains(&t);
        let i = t as i32; // saturating; out-of-range values are reported below
        let f = t - i as f32;
        *o = i
            .wrapping_add((f >= 0.5) as i32)
            .wrapping_sub((f <= -0.5) as i32);
    }
    if ok {
        Ok(())
    } else {
        Err(Error::Overflow(
            "a rounded weight does not fit in int32".into(),
        ))
    }
}

/// `round_half_away_from_zero` of a non-negative float64 below 2^62.
#[inline(always)]
fn round_pos(a: f64) -> i64 {
    let i = a as i64;
    i + (a - i as f64 >= 0.5) as i64
}

/// Rate-distortion-optimised rounding (spec §10.5).
///
/// Each weight chooses among 0 and the one or two magnitudes next to `|w|/Δ` the one with the
/// least `importance·32768/λ·(|w|/Δ − q)² + rate(+q)` (the reference prices the positive level
/// even for negative weights), then the rate model learns the signed level.
///
/// One deliberate deviation: a negative weight whose `|w|/Δ` rounds to exactly 2^31 passes the
/// reference's overflow check but then gets level 0 (an x86 conversion artefact); here it gets
/// its RDO level (−2^31 or −2^31 + 1). No other input is affected.
pub fn quantize_rdo(
    weights: &[f32],
    delta: f32,
    lambda_scale: f32,
    max_num_no_rem: u32,
    importance: Option<&[f32]>,
    out: &mut [i32],
) -> Result<()> {
    check_lengths(weights.len(), out.len())?;
    if let Some(imp) = importance {
        check_lengths(weights.len(), imp.len())?;
    }
    let lambda = lambda_scale as f64 * (core::f64::consts::LN_2 / 6.0);
    let ds = 32768.0 / lambda;
    let qs = 1.0 / delta as f64;
    let mut rm = RateModel::new(max_num_no_rem, 0)?;
    for (k, (o, &w)) in out.iter_mut().zip(weights).enumerate() {
        let w = w as f64;
        let x = w * qs;
        // round(x) > 2^31 - 1 or < -2^31, without rounding.
        if !(x > -2_147_483_648.5 && x < 2_147_483_647.5) {
            return Err(Error::Overflow(format!(
                "weight {k}: level does not fit in int32"
            )));
        }
        let sg = if w < 0.0 { -1.0 } else { 1.0 };
        let a = sg * w * qs;
        let dsi = importance.map_or(ds, |v| ds * v[k] as f64);
        let m = round_pos(a);
        // Candidates max(1, m - 1) ..= m, priced as positive levels (spec quirk), with the
        // zero: `cost_triple` prices 0, lo and lo + 1 in one pass.
        let lo = (m - 1).max(1);
        let [r0, r_lo, r_hi] = rm.cost_triple(lo as u64, false);
        let mut best = 0i64;
        let mut jmin = dsi * (a * a) + r0 as f64;
        for (q, rate) in [(lo, r_lo), (lo + 1, r_hi)] {
            if q > m {
                break;
            }
            let e = a - q as f64;
            let c = dsi * (e * e) + rate as f64;
            if c < jmin {
                best = q;
                jmin = c;
            }
        }
        let r = if sg < 0.0 { -best } else { best };
        rm.update(r);
        // |r| <= 2^31 - 1 for w >= 0 and <= 2^31 for w < 0 by the check above.
        *o = r as i32;
    }
    Ok(())
}

fn check_lengths(n: usize, m: usize) -> Result<()> {
    if n != m {
        return Err(Error::InvalidParameter(format!(
            "length mismatch: {m} elements for {n} weights"
        )));
    }
    Ok(())
}

/// The coarser qp the reference retries with after an overflow (spec §10.7), computed as it
/// does: `ceil(float32(baseQP + (minStep·k / 2^(baseQP/k) − k)))`.
pub fn fallback_qp(max_abs: f32, qp_density: u32) -> Result<i32> {
    check_qp_density(qp_density)?;
    if !(max_abs.is_finite() && max_abs > 0.0) {
        return Err(Error::InvalidParameter(format!(
            "fallback qp needs a positive finite max |w|, got {max_abs}"
        )));
    }
    let k = (1u32 << qp_density) as f64;
    let min_step = max_abs as f64 / 2147483645.0;
    let base_qp = (min_step.log2().floor() * k) as f32;
    let e = (base_qp / k as f32) as f64;
    let new_qp = (base_qp as f64 + ((min_step * k) / e.exp2() - k)) as f32;
    Ok(new_qp.ceil() as i32)
}

/// Reusable quantizer: keeps the trellis' rate-model stores between layers.
#[derive(Clone, Debug, Default)]
pub struct Quantizer {
    trellis: Trellis,
}

impl Quantizer {
    /// A quantizer with nothing allocated yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// [`quantize_layer_into`] reusing this quantizer's buffers.
    pub fn quantize_into(
        &mut self,
        weights: &[f32],
        params: &QuantParams,
        importance: Option<&[f32]>,
        out: &mut [i32],
    ) -> Result<i32> {
        params.validate()?;
        check_lengths(weights.len(), out.len())?;
        if let Some(k) = weights.iter().position(|w| !w.is_finite()) {
            return Err(Error::InvalidParameter(format!(
                "weight {k} is not finite ({})",
                weights[k]
            )));
        }
        if let Some(imp) = importance {
            if imp.len() != weights.len() {
                return Err(Error::InvalidParameter(format!(
                    "importance has {} elements for {} weights",
                    imp.len(),
                    weights.len()
                )));
            }
            if let Some(k) = imp.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
                return Err(Error::InvalidParameter(format!(
                    "importance {k} must be finite and non-negative, got {}",
                    imp[k]
                )));
            }
        }
        let qp = params.qp;
        match self.attempt(weights, params, qp, importance, out) {
            Err(Error::Overflow(_)) => {}
            other => return other.map(|()| qp),
        }
        // Overflow fallback (spec §10.7). The reference's qp comes first, so results agree
        // wherever it succeeds; where its float32 rounding gives back a qp that still overflows
        // (its "Prevention of integer-overflow failed!"), the next qps are tried. Every qp step
        // grows Δ by at least 2^(1/(2k)), and k steps double it, after which every |w|/Δ is
        // at most about 2^30: the loop below always ends in success.
        let max_abs = weights.iter().fold(0.0f32, |m, w| m.max(w.abs()));
        let mut next = fallback_qp(max_abs, params.qp_density)?;
        let tries = (1u32 << params.qp_density) + 3;
        for _ in 0..tries {
            if next != qp {
                match self.attempt(weights, params, next, importance, out) {
                    Err(Error::Overflow(_)) => {}
                    other => return other.map(|()| next),
                }
            }
            next = next.max(qp).saturating_add(1);
        }
        Err(Error::Overflow(format!(
            "no qp up to {next} keeps the levels in int32"
        )))
    }

    fn attempt(
        &mut self,
        weights: &[f32],
        params: &QuantParams,
        qp: i32,
        importance: Option<&[f32]>,
        out: &mut [i32],
    ) -> Result<()> {
        let delta = step_size(qp, params.qp_density)?;
        if params.dq_flag {
            self.trellis.quantize(
                weights,
                delta,
                params.lambda_scale,
                params.max_num_no_rem,
                importance,
                out,
            )
        } else if params.lambda_scale > 0.0 {
            quantize_rdo(
                weights,
                delta,
                params.lambda_scale,
                params.max_num_no_rem,
                importance,
                out,
            )
        } else {
            quantize_uniform(weights, delta, out)
        }
    }
}

/// `quantLayer`: levels of `weights` (reconstruction indices when `dq_flag`) and the qp used.
///
/// `importance` (same length, finite, ≥ 0) weighs each weight's squared error in the RDO and
/// trellis decisions; `None` reproduces NNCodec exactly. Weights must be finite.
pub fn quantize_layer(
    weights: &[f32],
    params: &QuantParams,
    importance: Option<&[f32]>,
) -> Result<(Vec<i32>, i32)> {
    let mut out = vec![0; weights.len()];
    let qp = quantize_layer_into(weights, params, importance, &mut out)?;
    Ok((out, qp))
}

/// [`quantize_layer`] into a caller's buffer of the same length; returns the qp used.
pub fn quantize_layer_into(
    weights: &[f32],
    params: &QuantParams,
    importance: Option<&[f32]>,
    out: &mut [i32],
) -> Result<i32> {
    Quantizer::new().quantize_into(weights, params, importance, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_size_examples() {
        assert_eq!(step_size(-38, 2).unwrap(), 6.0 / 4096.0);
        assert_eq!(step_size(0, 0).unwrap(), 1.0);
        assert_eq!(step_size(0, 2).unwrap(), 1.0);
        assert_eq!(step_size(1, 2).unwrap(), 1.25);
        assert_eq!(step_size(-1, 2).unwrap(), 0.875);
        assert_eq!(step_size(4, 2).unwrap(), 2.0);
        assert_eq!(step_size(-126, 0).unwrap(), f32::MIN_POSITIVE);
        assert!(step_size(-127, 0).is_err());
        assert!(step_size(127, 0).is_ok());
        assert!(step_size(128, 0).is_err());
        assert!(step_size(i32::MIN, 7).is_err());
        assert!(step_size(i32::MAX, 0).is_err());
        assert!(step_size(0, MAX_QP_DENSITY + 1).is_err());
        // Monotone in qp.
        for qpd in 0..=MAX_QP_DENSITY {
            let mut last = 0.0;
            for qp in -400..400 {
                if let Ok(d) = step_size(qp, qpd) {
                    assert!(d > last, "qp {qp} qpd {qpd}");
                    last = d;
                }
            }
        }
    }

    #[test]
    fn uniform_rounds_half_away_in_float32() {
        let mut out = [0; 8];
        let w = [0.5f32, -0.5, 1.49999, -2.5, 0.49999997, -0.0, 3.0, 1e-30];
        quantize_uniform(&w, 1.0, &mut out).unwrap();
        assert_eq!(out, [1, -1, 1, -3, 0, 0, 3, 0]);
        let mut one = [0];
        assert!(quantize_uniform(&[-2147483648.0], 1.0, &mut one).is_ok());
        assert_eq!(one[0], i32::MIN);
        assert!(quantize_uniform(&[2147483648.0], 1.0, &mut one).is_err());
        assert!(quantize_uniform(&[2147483520.0], 1.0, &mut one).is_ok());
        assert_eq!(one[0], 2147483520);
        assert!(quantize_uniform(&[-2147483904.0], 1.0, &mut one).is_err());
    }

    #[test]
    fn fallback_examples_from_the_spec() {
        assert_eq!(fallback_qp(1e7, 2).unwrap(), -31);
        let p = QuantParams {
            dq_flag: false,
            ..QuantParams::default()
        };
        let (levels, qp) = quantize_layer(&[1e7, -0.5, 0.0], &p, None).unwrap();
        assert_eq!(qp, -31);
        assert_eq!(levels[2], 0);
    }

    #[test]
    fn fallback_recovers_where_the_reference_gives_up() {
        // w = 2^31·Δ at qp −38: the reference's fallback qp rounds back to −38 and fails again.
        let delta = step_size(-38, 2).unwrap();
        let w = 2147483648.0f32 * delta;
        assert_eq!(fallback_qp(w, 2).unwrap(), -38);
        for dq_flag in [false, true] {
            for lambda_scale in [0.0, 1.0] {
                let p = QuantParams {
                    dq_flag,
                    lambda_scale,
                    ..QuantParams::default()
                };
                let (levels, qp) = quantize_layer(&[w, -w, 0.1], &p, None).unwrap();
                assert!(qp > -38);
                let d = step_size(qp, 2).unwrap() as f64;
                // Within two steps, plus float32 rounding of w/Δ in plain rounding (2^-24 each).
                let tol = 2.0 * d + w as f64 * 2f64.powi(-22);
                assert!(
                    ((levels[0] as f64 * d) - w as f64).abs() <= tol,
                    "{levels:?} {qp}"
                );
            }
        }
        // The largest float32 weights, every qp_density.
        for qpd in 0..=MAX_QP_DENSITY {
            for dq_flag in [false, true] {
                let p = QuantParams {
                    dq_flag,
                    qp_density: qpd,
                    qp: 0,
                    lambda_scale: 0.5,
                    ..QuantParams::default()
                };
                let w = [f32::MAX, -f32::MAX, 1.0];
                let (levels, qp) = quantize_layer(&w, &p, None).unwrap();
                let d = step_size(qp, qpd).unwrap();
                assert!((dequantize(levels[0], d) / f32::MAX - 1.0).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn rejects_bad_input_without_panicking() {
        let p = QuantParams::default();
        assert!(quantize_layer(&[f32::NAN], &p, None).is_err());
        assert!(quantize_layer(&[f32::INFINITY], &p, None).is_err());
        assert!(quantize_layer(&[1.0], &p, Some(&[1.0, 2.0])).is_err());
        assert!(quantize_layer(&[1.0], &p, Some(&[-1.0])).is_err());
        assert!(quantize_layer(&[1.0], &p, Some(&[f32::NAN])).is_err());
        let bad = [
            QuantParams { qp_density: 8, ..p },
            QuantParams {
                lambda_scale: f32::NAN,
                ..p
            },
            QuantParams {
                lambda_scale: f32::INFINITY,
                ..p
            },
            QuantParams {
                max_num_no_rem: MAX_NUM_NO_REM + 1,
                ..p
            },
            QuantParams {
                general_profile_idc: 2,
                ..p
            },
            QuantParams { scan_order: 1, ..p },
            QuantParams { qp: -1000, ..p },
            QuantParams { qp: 1000, ..p },
        ];
        for b in bad {
            assert!(quantize_layer(&[1.0], &b, None).is_err(), "{b:?}");
        }
        let mut out = [0; 2];
        assert!(quantize_layer_into(&[1.0], &p, None, &mut out).is_err());
        assert!(dequantize_layer_into(&[1], -38, 2, &mut [0.0; 2]).is_err());
        assert!(dequantize_layer(&[1], -38, 9).is_err());
    }

    #[test]
    fn empty_and_single_weights() {
        for dq_flag in [false, true] {
            for lambda_scale in [0.0, 1.0] {
                let p = QuantParams {
                    dq_flag,
                    lambda_scale,
                    ..QuantParams::default()
                };
                assert_eq!(quantize_layer(&[], &p, None).unwrap(), (vec![], -38));
                let d = step_size(-38, 2).unwrap();
                let (l, qp) = quantize_layer(&[3.0 * d], &p, None).unwrap();
                assert_eq!(qp, -38);
                assert!(l[0] != 0);
            }
        }
    }

    #[test]
    fn rdo_keeps_a_level_where_the_reference_zeroes_minus_two_to_the_31() {
        // |w|/Δ = 2^31 for a negative weight passes the overflow check; the reference then
        // outputs 0 (documented deviation), here the RDO level.
        let mut out = [7];
        quantize_rdo(&[-2147483648.0], 1.0, 1.0, 10, None, &mut out).unwrap();
        assert!(out[0] == i32::MIN || out[0] == i32::MIN + 1, "{}", out[0]);
        assert!(quantize_rdo(&[2147483648.0], 1.0, 1.0, 10, None, &mut out).is_err());
        assert!(quantize_rdo(&[-2147483520.0], 1.0, 1.0, 10, None, &mut out).is_ok());
        assert!(quantize_rdo(&[-2147483904.0], 1.0, 1.0, 10, None, &mut out).is_err());
    }

    #[test]
    fn zero_importance_leaves_only_the_rate() {
        // With no distortion to weigh, every weight takes the cheapest level: zero.
        let w: Vec<f32> = (0..500)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.003)
            .collect();
        let zeros = vec![0.0f32; w.len()];
        for dq_flag in [false, true] {
            let p = QuantParams {
                dq_flag,
                lambda_scale: 1.0,
                ..QuantParams::default()
            };
            let (levels, _) = quantize_layer(&w, &p, Some(&zeros)).unwrap();
            assert!(levels.iter().all(|&l| l == 0), "dq {dq_flag}");
            let (plain, _) = quantize_layer(&w, &p, None).unwrap();
            assert!(plain.iter().any(|&l| l != 0));
        }
    }

    #[test]
    fn extreme_inputs_never_panic() {
        let w = [
            f32::MAX,
            -f32::MAX,
            f32::MIN_POSITIVE,
            -1e-45,
            0.0,
            -0.0,
            1e30,
            -1e-30,
            2147483648.0,
            -2147483648.0,
        ];
        for qpd in 0..=MAX_QP_DENSITY {
            let k = 1i32 << qpd;
            for qp in [-126 * k, -38, 0, 127 * k - 1, i32::MIN, i32::MAX] {
                for (dq_flag, lambda_scale) in
                    [(false, 0.0), (false, 1.0), (true, 0.0), (true, 1.0)]
                {
                    let p = QuantParams {
                        dq_flag,
                        qp,
                        qp_density: qpd,
                        lambda_scale,
                        max_num_no_rem: 0,
                        ..QuantParams::default()
                    };
                    if let Ok((levels, qp_used)) = quantize_layer(&w, &p, None) {
                        assert!(qp_used >= qp);
                        assert!(dequantize_layer(&levels, qp_used, qpd).is_ok());
                    }
                    let _ = quantize_layer(&w[2..], &p, None);
                }
            }
        }
    }

    #[test]
    fn dequantization_is_one_float32_product() {
        let d = step_size(-38, 2).unwrap();
        let r = dequantize_layer(&[0, 1, -3, i32::MAX, i32::MIN], -38, 2).unwrap();
        assert_eq!(r[1], d);
        assert_eq!(r[2], -3.0 * d);
        assert_eq!(r[3], d * 2147483648.0);
        assert_eq!(r[4], -d * 2147483648.0);
    }
}
