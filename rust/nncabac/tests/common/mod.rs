//! Shared helpers of the integration tests: locating `shared/vectors` and reading `.npy` files.
#![allow(dead_code)]

use std::path::PathBuf;

/// `shared/vectors`, found next to the repository root (or at `$NNCABAC_SHARED/vectors`).
pub fn vectors_dir() -> PathBuf {
    if let Ok(p) = std::env::var("NNCABAC_SHARED") {
        return PathBuf::from(p).join("vectors");
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.join("../shared/vectors")
}

pub fn index() -> serde_json::Value {
    let path = vectors_dir().join("index.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e} (set NNCABAC_SHARED)", path.display()));
    serde_json::from_str(&text).expect("index.json parses")
}

/// A little-endian, C-order `.npy` array: shape and raw element bytes.
pub struct Npy {
    pub descr: String,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

pub fn read_npy(name: &str) -> Npy {
    let bytes = std::fs::read(vectors_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{name}: not an npy file");
    let (hlen, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        )
    };
    let header = std::str::from_utf8(&bytes[start..start + hlen]).unwrap();
    assert!(
        header.contains("'fortran_order': False"),
        "{name}: fortran order"
    );
    let descr = header
        .split("'descr': '")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap()
        .to_string();
    let shape_txt = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape = shape_txt
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    Npy {
        descr,
        shape,
        data: bytes[start + hlen..].to_vec(),
    }
}

impl Npy {
    pub fn i32s(&self) -> Vec<i32> {
        assert_eq!(self.descr, "<i4");
        self.data
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }
    pub fn f32s(&self) -> Vec<f32> {
        assert_eq!(self.descr, "<f4");
        self.data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }
}
