//! Property tests: any levels, shapes and parameters round-trip; hostile bytes never panic.

use nncabac::{Decoder, Encoder, Error, LayerParams};
use proptest::prelude::*;

fn level() -> impl Strategy<Value = i32> {
    prop_oneof![
        6 => Just(0),
        3 => -3i32..=3,
        2 => -300i32..=300,
        1 => any::<i32>(),
        1 => prop_oneof![Just(i32::MIN), Just(i32::MAX), Just(i32::MIN + 1), Just(i32::MAX - 1)],
    ]
}

fn params() -> impl Strategy<Value = (LayerParams, bool)> {
    (
        any::<bool>(),
        1u32..=40,
        0u8..=1,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(dq, g, gpi, pnip, opt)| {
            (
                LayerParams {
                    dq_flag: dq,
                    num_gtx_flags: g,
                    general_profile_idc: gpi,
                    parent_node_id_present_flag: pnip,
                    scan_order: 0,
                },
                opt,
            )
        })
}

/// A valid dependent-quantization index sequence from free levels: map each to the parity its
/// state allows, so decoding must give the input back.
fn make_dq_valid(levels: &mut [i32]) {
    let mut state = 0u32;
    for r in levels.iter_mut() {
        let l = (*r as i64 / 2).clamp(-(1 << 29), 1 << 29);
        *r = nncabac::layer::reconstruction_index(l, state) as i32;
        state = nncabac::layer::next_state(state, l);
    }
}

fn shape_for(n: usize, rows: usize) -> Vec<usize> {
    if rows > 1 && n % rows == 0 && n > 0 {
        vec![rows, n / rows]
    } else {
        vec![n]
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn layers_round_trip(
        layers in prop::collection::vec((prop::collection::vec(level(), 0..300), 1usize..5, params(), prop::option::of(-128i64..128)), 1..4)
    ) {
        let mut enc = Encoder::new();
        let mut expect = Vec::new();
        for (levels, rows, (p, opt), prefix) in &layers {
            let mut levels = levels.clone();
            if p.dq_flag {
                make_dq_valid(&mut levels);
            }
            let shape = shape_for(levels.len(), *rows);
            if let Some(v) = prefix {
                enc.encode_signed(8, *v).unwrap();
            }
            enc.encode_layer(&levels, &shape, p, *opt).unwrap();
            expect.push((levels, shape, *p, *prefix));
        }
        let bytes = enc.finish();
        let mut dec = Decoder::new(&bytes[..]).unwrap();
        for (levels, shape, p, prefix) in &expect {
            if let Some(v) = prefix {
                prop_assert_eq!(dec.decode_signed(8).unwrap(), *v);
            }
            prop_assert_eq!(&dec.decode_layer(shape, p).unwrap(), levels);
        }
        prop_assert_eq!(dec.finish().unwrap(), bytes.len());
    }

    #[test]
    fn fields_round_trip(fields in prop::collection::vec((1u32..=32, any::<u32>(), any::<bool>()), 0..40)) {
        let mut enc = Encoder::new();
        let mut want = Vec::new();
        for &(bits, raw, signed) in &fields {
            let mask = u32::MAX >> (32 - bits);
            if signed {
                let v = (((raw & mask) << (32 - bits)) as i32 >> (32 - bits)) as i64;
                enc.encode_signed(bits, v).unwrap();
                want.push(v);
            } else {
                enc.encode_unsigned(bits, (raw & mask) as u64).unwrap();
                want.push((raw & mask) as i64);
            }
        }
        let bytes = enc.finish();
        let mut dec = Decoder::new(&bytes[..]).unwrap();
        for (&(bits, _, signed), &v) in fields.iter().zip(&want) {
            let got = if signed { dec.decode_signed(bits).unwrap() } else { dec.decode_unsigned(bits).unwrap() as i64 };
            prop_assert_eq!(got, v);
        }
        prop_assert_eq!(dec.finish().unwrap(), bytes.len());
    }

    /// Truncated, extended or bit-flipped streams give an error or some levels, never a panic.
    #[test]
    fn hostile_streams_never_panic(
        levels in prop::collection::vec(level(), 0..200),
        (p, opt) in params(),
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 0..4),
        extra in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let mut enc = Encoder::new();
        enc.encode_layer(&levels, &[levels.len()], &p, opt).unwrap();
        let mut bytes = enc.finish();
        for (i, bit) in &flips {
            let i = i.index(bytes.len());
            bytes[i] ^= 1 << bit;
        }
        bytes.extend_from_slice(&extra);
        let cut = cut.index(bytes.len() + 1);
        let data = &bytes[..cut];
        if let Ok(mut dec) = Decoder::new(data) {
            if let Ok(out) = dec.decode_layer(&[levels.len()], &p) {
                prop_assert_eq!(out.len(), levels.len());
                if let Ok(n) = dec.finish() {
                    prop_assert!(n <= data.len());
                }
            }
        }
    }
}

#[test]
fn truncation_is_reported_as_truncated() {
    let levels: Vec<i32> = (0..2000).map(|i| (i * 7919 % 61) - 30).collect();
    let p = LayerParams {
        dq_flag: false,
        ..LayerParams::default()
    };
    let mut enc = Encoder::new();
    enc.encode_layer(&levels, &[levels.len()], &p, true)
        .unwrap();
    let bytes = enc.finish();
    for cut in [2, bytes.len() / 2, bytes.len() - 1] {
        let mut dec = Decoder::new(&bytes[..cut]).unwrap();
        let r = dec
            .decode_layer(&[levels.len()], &p)
            .and_then(|_| dec.finish());
        assert_eq!(r, Err(Error::Truncated), "cut at {cut}");
    }
}

#[test]
fn a_huge_claimed_shape_fails_fast_without_allocating_it() {
    let bytes = Encoder::new().finish();
    let p = LayerParams {
        dq_flag: false,
        ..LayerParams::default()
    };
    let mut dec = Decoder::new(&bytes[..]).unwrap();
    // 10^12 weights from 4 bytes: refused by running out of data, not by allocating 4 TB.
    assert!(dec.decode_layer(&[1_000_000, 1_000_000], &p).is_err());
}

#[test]
fn bad_parameters_are_rejected() {
    let mut enc = Encoder::new();
    let bad_g = LayerParams {
        num_gtx_flags: 0,
        ..LayerParams::default()
    };
    assert!(matches!(
        enc.encode_layer(&[1], &[1], &bad_g, false),
        Err(Error::InvalidParameter(_))
    ));
    let bad_scan = LayerParams {
        scan_order: 1,
        ..LayerParams::default()
    };
    assert!(matches!(
        enc.encode_layer(&[1], &[1], &bad_scan, false),
        Err(Error::InvalidParameter(_))
    ));
    let p = LayerParams::default();
    assert!(matches!(
        enc.encode_layer(&[1, 2], &[3], &p, false),
        Err(Error::InvalidParameter(_))
    ));
    assert!(matches!(
        enc.encode_layer(&[], &[2, 0], &p, false),
        Err(Error::InvalidParameter(_))
    ));
    assert!(enc.encode_signed(8, 128).is_err());
    assert!(enc.encode_signed(0, 0).is_err());
    assert!(enc.encode_unsigned(4, 16).is_err());
}

/// Layers longer than the decoder's 16K-level chunk, with zero runs that cross chunk ends and
/// dense stretches of large levels (whose contexts sit at their fixed points), both quantizer
/// modes: the decoder's run loop, chunking and skipped updates must give the input back.
#[test]
fn long_layers_with_runs_and_saturated_contexts_round_trip() {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut levels = Vec::new();
    for block in 0..12 {
        let len = 1000 + (rnd() % 9000) as usize;
        for _ in 0..len {
            let r = rnd();
            levels.push(match block % 4 {
                0 => 0,                                                          // one long run
                1 => ((r % 1000) as i32 + 12) * if r & 1 == 0 { 1 } else { -1 }, // all > G
                2 => [0, 0, 0, 1, -1, 2][(r % 6) as usize],                      // sparse, small
                _ => (r % 7) as i32 - 3,
            });
        }
    }
    levels.extend(std::iter::repeat(0).take(20_000)); // a run across a chunk end at the end
    for dq in [false, true] {
        let mut want = levels.clone();
        if dq {
            make_dq_valid(&mut want);
        }
        for opt in [false, true] {
            let p = LayerParams {
                dq_flag: dq,
                ..LayerParams::default()
            };
            let mut enc = Encoder::new();
            enc.encode_layer(&want, &[want.len()], &p, opt).unwrap();
            let bytes = enc.finish();
            let mut dec = Decoder::new(&bytes[..]).unwrap();
            let got = dec.decode_layer(&[want.len()], &p).unwrap();
            assert_eq!(dec.finish(), Ok(bytes.len()), "dq {dq} opt {opt}");
            assert!(got == want, "dq {dq} opt {opt}");
            // Cut anywhere, including inside later chunks: a truncation, never a wrong layer.
            for cut in [bytes.len() / 3, bytes.len() * 2 / 3, bytes.len() - 2] {
                let mut dec = Decoder::new(&bytes[..cut]).unwrap();
                let r = dec
                    .decode_layer(&[want.len()], &p)
                    .and_then(|_| dec.finish());
                assert_eq!(r, Err(Error::Truncated), "dq {dq} opt {opt} cut {cut}");
            }
        }
    }
}

/// An encoder restarted after each stream (keeping its buffers) writes the bytes of fresh
/// encoders, whatever the previous stream left in them (a failed layer included).
#[test]
fn a_restarted_encoder_writes_what_fresh_encoders_write() {
    let layers: Vec<Vec<i32>> = vec![
        (0..30_000).map(|i| (i * 7919 % 61) - 30).collect(),
        (0..500)
            .map(|i| if i % 3 == 0 { 0 } else { 40 - i % 80 })
            .collect(),
        vec![],
        (0..5000).map(|i| i % 2).collect(),
    ];
    let mut reused = Encoder::new();
    for dq in [false, true] {
        let p = LayerParams {
            dq_flag: dq,
            ..LayerParams::default()
        };
        for levels in &layers {
            let mut want = levels.clone();
            if dq {
                make_dq_valid(&mut want);
            }
            let mut fresh = Encoder::new();
            fresh.encode_layer(&want, &[want.len()], &p, true).unwrap();
            reused.encode_layer(&want, &[want.len()], &p, true).unwrap();
            assert_eq!(reused.finish_and_restart(), fresh.finish(), "dq {dq}");
            // A refused layer (shape mismatch) must not leak into the next stream.
            assert!(reused
                .encode_layer(&want, &[want.len() + 1], &p, true)
                .is_err());
            let _ = reused.finish_and_restart();
        }
    }
}
