//! Properties of the quantizers on random weights and parameters.

use nncabac::layer::{coded_level, next_state, reconstruction_index};
use nncabac::quant::{dequantize, quantize_layer, step_size, QuantParams};
use nncabac::{Decoder, Encoder, LayerParams};
use proptest::prelude::*;

/// Weights of a few shapes: Laplacian-like around a scale, exact zeros, exact half steps.
fn weights(max_len: usize) -> impl Strategy<Value = Vec<f32>> {
    let one = prop_oneof![
        6 => (-1.0f32..1.0).prop_map(|u| 0.03 * u.signum() * (-(1.0 - u.abs()).max(1e-9).ln())),
        2 => Just(0.0f32),
        1 => (-200i32..200).prop_map(|h| h as f32 * 0.5 * (6.0 / 4096.0)),
        1 => -5.0f32..5.0,
    ];
    proptest::collection::vec(one, 0..max_len)
}

fn params() -> impl Strategy<Value = QuantParams> {
    (
        any::<bool>(),
        -60i32..-20,
        0u32..=3,
        prop_oneof![Just(0.0f32), Just(1.0), 0.0f32..5.0],
        prop_oneof![Just(10u32), 0u32..=4],
        0u8..=1,
    )
        .prop_map(
            |(dq_flag, qp, qp_density, lambda_scale, mnr, gpi)| QuantParams {
                dq_flag,
                qp: qp * (1 << qp_density) / 4,
                qp_density,
                lambda_scale,
                max_num_no_rem: mnr,
                general_profile_idc: gpi,
                scan_order: 0,
            },
        )
}

fn check_state_machine(levels: &[i32]) -> Result<(), TestCaseError> {
    let mut state = 0;
    for (k, &r) in levels.iter().enumerate() {
        let l = coded_level(r as i64, state);
        prop_assert_eq!(
            reconstruction_index(l, state),
            r as i64,
            "index {} state {}",
            k,
            state
        );
        state = next_state(state, l);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn plain_rounding_is_within_half_a_step(w in weights(400), qp in -60i32..0, qpd in 0u32..=3) {
        let qp = qp * (1 << qpd) / 4; // steps from 2^-15 to 1
        let p = QuantParams {
            dq_flag: false,
            qp,
            qp_density: qpd,
            lambda_scale: 0.0,
            ..QuantParams::default()
        };
        let (levels, qp_used) = quantize_layer(&w, &p, None).unwrap();
        prop_assert_eq!(qp_used, qp);
        let d = step_size(qp_used, qpd).unwrap();
        for (&x, &r) in w.iter().zip(&levels) {
            let err = (dequantize(r, d) as f64 - x as f64).abs();
            // Δ/2, plus the float32 roundings of 1/Δ, w·(1/Δ) and Δ·r.
            let tol = 0.5 * d as f64 + (x.abs() as f64 + d as f64) * 2f64.powi(-21);
            prop_assert!(err <= tol, "w {} r {} err {} Δ {}", x, r, err, d);
        }
    }

    #[test]
    fn trellis_levels_follow_the_state_machine(w in weights(400), p in params()) {
        let p = QuantParams { dq_flag: true, ..p };
        let (levels, _) = quantize_layer(&w, &p, None).unwrap();
        check_state_machine(&levels)?;
    }

    #[test]
    fn importance_of_ones_changes_nothing(w in weights(300), p in params()) {
        let ones = vec![1.0f32; w.len()];
        let plain = quantize_layer(&w, &p, None).unwrap();
        prop_assert_eq!(plain, quantize_layer(&w, &p, Some(&ones)).unwrap());
    }

    #[test]
    fn weighted_levels_are_valid_too(w in weights(300), p in params(), seed in any::<u64>()) {
        let mut s = seed;
        let imp: Vec<f32> = w.iter().map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0
        }).collect();
        let (levels, qp) = quantize_layer(&w, &p, Some(&imp)).unwrap();
        prop_assert_eq!(qp, p.qp);
        if p.dq_flag {
            check_state_machine(&levels)?;
        }
    }

    #[test]
    fn quantized_levels_round_trip_through_the_coder(
        w in weights(500),
        p in params(),
        rows in 1usize..4,
    ) {
        let (levels, _) = quantize_layer(&w, &p, None).unwrap();
        let shape = if levels.len() % rows == 0 && !levels.is_empty() {
            vec![rows, levels.len() / rows]
        } else {
            vec![levels.len()]
        };
        let lp = LayerParams {
            dq_flag: p.dq_flag,
            num_gtx_flags: p.num_gtx_flags(),
            general_profile_idc: p.general_profile_idc,
            parent_node_id_present_flag: false,
            scan_order: 0,
        };
        let mut enc = Encoder::new();
        enc.encode_layer(&levels, &shape, &lp, true).unwrap();
        let bytes = enc.finish();
        let mut dec = Decoder::new(&bytes[..]).unwrap();
        prop_assert_eq!(dec.decode_layer(&shape, &lp).unwrap(), levels);
        prop_assert_eq!(dec.finish().unwrap(), bytes.len());
    }

    #[test]
    fn single_weights_quantize_to_a_nearby_level(x in -3.0f32..3.0, p in params()) {
        let (levels, qp) = quantize_layer(&[x], &p, None).unwrap();
        prop_assert_eq!(levels.len(), 1);
        let d = step_size(qp, p.qp_density).unwrap() as f64;
        let err = (dequantize(levels[0], d as f32) as f64 - x as f64).abs();
        // RDO may round down by up to a step (or to zero); the trellis picks among four
        // neighbouring multiples of Δ and zero.
        let near = err <= 2.0 * d + x.abs() as f64 * 1e-6;
        prop_assert!(near || levels[0] == 0, "x {} r {}", x, levels[0]);
        prop_assert_eq!(quantize_layer(&[], &p, None).unwrap(), (vec![], p.qp));
    }
}
