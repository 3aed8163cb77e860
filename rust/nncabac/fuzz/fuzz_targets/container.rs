//! Any bytes as a container file: parse, verify and decode every payload. Each input is also
//! tried with its header checksum made valid, and as a plain tensor table wrapped in a valid
//! preamble, so that mutations get past the CRC and exercise the table and entry checks.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nncabac::container::{crc32, Container, MAGIC, MAJOR, MINOR, PREAMBLE_LEN};

fn exercise(data: &[u8]) {
    let Ok(c) = Container::parse(data) else {
        return;
    };
    for (e, r) in c.entries().iter().zip(c.decode_all(Some(1))) {
        if let Ok(elements) = r {
            assert_eq!(Some(elements.len() as u64), e.num_elements().ok());
        }
    }
}

/// `data` with the header checksum recomputed over the header its preamble claims.
fn with_valid_crc(data: &[u8]) -> Option<Vec<u8>> {
    let len = u32::from_le_bytes(data.get(12..16)?.try_into().ok()?) as usize;
    let end = PREAMBLE_LEN.checked_add(len)?;
    let mut fixed = data.to_vec();
    let crc = crc32(fixed.get(..end)?);
    fixed
        .get_mut(end..end + 4)?
        .copy_from_slice(&crc.to_le_bytes());
    Some(fixed)
}

/// A file whose plain table is the first `split` bytes of `data` and whose payload area is the
/// rest (the first byte chooses the split).
fn as_plain_table(data: &[u8]) -> Option<Vec<u8>> {
    let (&first, rest) = data.split_first()?;
    let split = (first as usize * rest.len()) / 255;
    let (table, payloads) = rest.split_at(split);
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&MAJOR.to_le_bytes());
    out.extend_from_slice(&MINOR.to_le_bytes());
    out.extend_from_slice(&(table.len() as u32 + 1).to_le_bytes());
    out.push(0);
    out.extend_from_slice(table);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payloads);
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    exercise(data);
    if let Some(fixed) = with_valid_crc(data) {
        exercise(&fixed);
    }
    if let Some(wrapped) = as_plain_table(data) {
        exercise(&wrapped);
    }
});
