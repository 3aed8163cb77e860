//! The nncabac file format: a bounded, checksummed, compact header with a tensor table, followed
//! by independently decodable payloads stored back to back in table order (see
//! `docs/format.md`).
//!
//! Readers trust nothing: every length is bounded before anything is allocated from it, the
//! payloads must exactly fill the rest of the file, and each payload's CRC32 is verified when it
//! is read. Parsing goes through checked accessors only (no indexing that could panic).
#![deny(clippy::indexing_slicing)]

use std::borrow::Cow;

use crate::batch::{decode_layer, DecodeJob, Decoded};
use crate::error::{Error, Result};

/// File magic.
pub const MAGIC: [u8; 8] = *b"NNCABAC\0";
/// Major version written; readers reject other majors.
pub const MAJOR: u16 = 2;
/// Minor version written; readers accept any minor of their major.
pub const MINOR: u16 = 0;
/// Largest header accepted, stored or inflated (bytes).
pub const MAX_HEADER_LEN: u64 = 256 << 20;
/// A header may take at most this many times its stored size once read: bounds the inflated
/// table and the total length of the tensor names (which share prefixes).
pub const MAX_EXPANSION: u64 = 64;
/// Most dimensions a tensor may have.
pub const MAX_DIMS: usize = 32;
/// Largest element count of one tensor (2^40).
pub const MAX_ELEMENTS: u64 = 1 << 40;
/// Longest tensor name (bytes of UTF-8).
pub const MAX_NAME_LEN: usize = u16::MAX as usize;
/// Longest metadata key; values may be up to `u32::MAX` bytes.
pub const MAX_KEY_LEN: usize = u16::MAX as usize;
const PREAMBLE: usize = 16;
/// Fewest table bytes one tensor can take (name: 2, descriptor: 2, CRC32: 4).
const MIN_ENTRY_BYTES: usize = 8;
/// Fewest table bytes one metadata pair can take (two empty strings).
const MIN_META_BYTES: usize = 2;

/// Name `i` of a code table (`i` is an enum's discriminant, so always in range).
fn name_of(names: &[&'static str], i: usize) -> &'static str {
    names.get(i).copied().unwrap_or("?")
}

/// The variant of `all` named `name` in `names` (same order).
fn by_name<T: Copy>(all: &[T], names: &[&str], name: &str, what: &str) -> Result<T> {
    names
        .iter()
        .zip(all)
        .find(|(n, _)| **n == name)
        .map(|(_, v)| *v)
        .ok_or_else(|| Error::InvalidParameter(format!("unknown {what} {name:?}")))
}

/// The variant of `all` whose code (index) is `code`.
fn by_code<T: Copy>(all: &[T], code: u8, err: &'static str) -> Result<T> {
    all.get(code as usize).copied().ok_or(Error::Corrupt(err))
}

/// Element type of the original tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum DType {
    F16 = 0,
    BF16 = 1,
    F32 = 2,
    F64 = 3,
    I8 = 4,
    I16 = 5,
    I32 = 6,
    I64 = 7,
    U8 = 8,
    U16 = 9,
    U32 = 10,
    U64 = 11,
    Bool = 12,
}

impl DType {
    const ALL: [DType; 13] = [
        DType::F16,
        DType::BF16,
        DType::F32,
        DType::F64,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::Bool,
    ];
    const NAMES: [&'static str; 13] = [
        "float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
        "uint16", "uint32", "uint64", "bool",
    ];

    /// Bytes per element when stored raw.
    pub fn size(self) -> u64 {
        match self {
            DType::I8 | DType::U8 | DType::Bool => 1,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F64 | DType::I64 | DType::U64 => 8,
        }
    }
    /// Whether this is a floating-point type (the only ones that may be quantized).
    pub fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }
    /// numpy-style name (`"float32"`, `"bfloat16"`, ...).
    pub fn name(self) -> &'static str {
        name_of(&Self::NAMES, self as usize)
    }
    /// Parses a numpy-style name.
    pub fn from_name(name: &str) -> Result<Self> {
        by_name(&Self::ALL, &Self::NAMES, name, "dtype")
    }
    fn from_code(code: u8) -> Result<Self> {
        by_code(&Self::ALL, code, "unknown dtype code")
    }
}

/// How a payload is coded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Method {
    /// Little-endian element bytes, stored as they are.
    Raw = 0,
    /// Integer values coded losslessly as CABAC levels (`dq_flag` 0).
    Lossless = 1,
    /// Uniformly quantized, nearest level.
    Uniform = 2,
    /// Rate-distortion optimized uniform quantization.
    Rdoq = 3,
    /// 8-state trellis-coded (dependent) quantization.
    Trellis = 4,
}

impl Method {
    const ALL: [Method; 5] = [
        Method::Raw,
        Method::Lossless,
        Method::Uniform,
        Method::Rdoq,
        Method::Trellis,
    ];
    const NAMES: [&'static str; 5] = ["raw", "lossless", "uniform", "rdoq", "trellis"];
    /// Name as used by the Python API.
    pub fn name(self) -> &'static str {
        name_of(&Self::NAMES, self as usize)
    }
    /// Parses a name.
    pub fn from_name(name: &str) -> Result<Self> {
        by_name(&Self::ALL, &Self::NAMES, name, "coding method")
    }
    fn from_code(code: u8) -> Result<Self> {
        by_code(&Self::ALL, code, "unknown coding method")
    }
    /// Whether the payload is a CABAC stream of one layer.
    pub fn is_cabac(self) -> bool {
        self != Method::Raw
    }
    /// Whether the payload holds quantization levels (reconstructed as `Δ × level`).
    pub fn is_quantized(self) -> bool {
        matches!(self, Method::Uniform | Method::Rdoq | Method::Trellis)
    }
    /// Whether the format stores a rate-distortion λ for this method.
    fn has_lambda(self) -> bool {
        matches!(self, Method::Rdoq | Method::Trellis)
    }
}

/// One tensor of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorEntry {
    /// Unique name (UTF-8, at most [`MAX_NAME_LEN`] bytes).
    pub name: String,
    /// Original element type.
    pub dtype: DType,
    /// Shape (row-major).
    pub shape: Vec<u64>,
    /// Coding method of the payload.
    pub method: Method,
    /// Dependent quantization flag of the CABAC layer (quantized methods only).
    pub dq_flag: bool,
    /// Greater-than flags of the CABAC layer (0 for raw payloads).
    pub num_gtx_flags: u16,
    /// Quantization parameter (step size with `qp_density`; 0 unless quantized).
    pub qp: i32,
    /// Quantization parameter density (0 unless quantized).
    pub qp_density: u8,
    /// Rate-distortion trade-off used (informative; stored for rdoq and trellis, else 0).
    pub lambda: f32,
    /// Payload offset from the start of the payload area (implied by the table order).
    pub offset: u64,
    /// Payload length in bytes.
    pub length: u64,
    /// CRC32 (IEEE) of the payload.
    pub crc32: u32,
}

impl TensorEntry {
    /// Number of elements (checked against [`MAX_ELEMENTS`]).
    pub fn num_elements(&self) -> Result<u64> {
        self.shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or(Error::Corrupt("tensor element count too large"))
    }

    /// Checks the entry on its own: dimensions, element count against the payload length,
    /// method against dtype, and the parameters its method needs.
    pub fn validate(&self) -> Result<()> {
        if self.shape.len() > MAX_DIMS {
            return Err(Error::Corrupt("too many dimensions"));
        }
        if self.name.len() > MAX_NAME_LEN {
            return Err(Error::Corrupt("tensor name too long"));
        }
        let n = self.num_elements()?;
        if self.dq_flag && !self.method.is_quantized() {
            return Err(Error::Corrupt(
                "dq_flag set for a method without quantization",
            ));
        }
        match self.method {
            Method::Raw => {
                if n.checked_mul(self.dtype.size()) != Some(self.length) {
                    return Err(Error::Corrupt(
                        "raw payload length does not match the shape",
                    ));
                }
            }
            m => {
                if m.is_quantized() != self.dtype.is_float() {
                    return Err(Error::Corrupt(if m.is_quantized() {
                        "quantized method for an integer dtype"
                    } else {
                        "lossless method for a floating-point dtype"
                    }));
                }
                if self.num_gtx_flags == 0 {
                    return Err(Error::Corrupt("num_gtx_flags is 0"));
                }
                // A CABAC bin costs at least 1/128 bit: more elements cannot be in the payload.
                if n > self.length.saturating_add(4).saturating_mul(1024) {
                    return Err(Error::Corrupt(
                        "element count impossible for the payload length",
                    ));
                }
                if self.shape.iter().skip(1).any(|&d| d == 0) {
                    return Err(Error::Corrupt(
                        "zero in a non-leading dimension of a coded tensor",
                    ));
                }
                // A corrupt qp/qp_density is the file's fault: say so before anything decodes.
                if m.is_quantized()
                    && crate::quant::step_size(self.qp, u32::from(self.qp_density)).is_err()
                {
                    return Err(Error::Corrupt("qp and qp_density give no valid step size"));
                }
            }
        }
        Ok(())
    }

    /// Decodes a payload of this entry (its checksum verified by the caller, see
    /// [`verify_payload`] and [`Container::decode`]).
    ///
    /// Quantized tensors come back as float32 reconstructions (`Δ × level`), to be converted
    /// to the original float dtype by the caller; raw float16/bfloat16 tensors as their 16-bit
    /// patterns ([`Elements::U16`]); everything else in its original dtype. Lossless values
    /// outside the dtype's range are an error, not wrapped.
    pub fn decode(&self, payload: &[u8]) -> Result<Elements> {
        self.validate()?;
        if payload.len() as u64 != self.length {
            return Err(Error::Truncated);
        }
        if self.method == Method::Raw {
            return decode_raw(self.dtype, payload);
        }
        let shape = self
            .shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<core::result::Result<Vec<usize>, _>>()
            .map_err(|_| Error::Corrupt("tensor too large for this platform"))?;
        let job = DecodeJob {
            stream: payload,
            shape: &shape,
            dq_flag: self.dq_flag,
            num_gtx_flags: u32::from(self.num_gtx_flags),
            dequantize: self
                .method
                .is_quantized()
                .then_some((self.qp, u32::from(self.qp_density))),
        };
        match decode_layer(&job)? {
            Decoded::Weights(w) => Ok(Elements::F32(w)),
            Decoded::Levels(levels) => levels_to(self.dtype, levels),
        }
    }

    /// Clears the fields the format does not store for this method (see `docs/format.md`), so
    /// that an entry written and read back compares equal.
    fn normalized(mut self) -> Self {
        if !self.method.is_cabac() {
            self.num_gtx_flags = 0;
        }
        if !self.method.is_quantized() {
            self.qp = 0;
            self.qp_density = 0;
        }
        if !self.method.has_lambda() {
            self.lambda = 0.0;
        }
        if self.method == Method::Raw {
            self.dq_flag = false;
        }
        self
    }
}

/// The elements of a decoded tensor, row-major (see [`TensorEntry::decode`] for the types).
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum Elements {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    /// uint16 values, or the bit patterns of raw float16/bfloat16 tensors.
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    Bool(Vec<bool>),
}

impl Elements {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Elements::F32(v) => v.len(),
            Elements::F64(v) => v.len(),
            Elements::I8(v) => v.len(),
            Elements::I16(v) => v.len(),
            Elements::I32(v) => v.len(),
            Elements::I64(v) => v.len(),
            Elements::U8(v) => v.len(),
            Elements::U16(v) => v.len(),
            Elements::U32(v) => v.len(),
            Elements::U64(v) => v.len(),
            Elements::Bool(v) => v.len(),
        }
    }
    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Little-endian elements of `N` bytes each (`payload.len()` is a multiple of `N`).
fn le<T, const N: usize>(payload: &[u8], from: fn([u8; N]) -> T) -> Vec<T> {
    payload
        .chunks_exact(N)
        .map(|c| from(c.try_into().unwrap_or([0; N])))
        .collect()
}

fn decode_raw(dtype: DType, p: &[u8]) -> Result<Elements> {
    Ok(match dtype {
        DType::F16 | DType::BF16 | DType::U16 => Elements::U16(le(p, u16::from_le_bytes)),
        DType::F32 => Elements::F32(le(p, f32::from_le_bytes)),
        DType::F64 => Elements::F64(le(p, f64::from_le_bytes)),
        DType::I8 => Elements::I8(le(p, i8::from_le_bytes)),
        DType::I16 => Elements::I16(le(p, i16::from_le_bytes)),
        DType::I32 => Elements::I32(le(p, i32::from_le_bytes)),
        DType::I64 => Elements::I64(le(p, i64::from_le_bytes)),
        DType::U8 => Elements::U8(p.to_vec()),
        DType::U32 => Elements::U32(le(p, u32::from_le_bytes)),
        DType::U64 => Elements::U64(le(p, u64::from_le_bytes)),
        DType::Bool => Elements::Bool(
            p.iter()
                .map(|&b| match b {
                    0 => Ok(false),
                    1 => Ok(true),
                    _ => Err(Error::Corrupt(
                        "raw bool payload holds a byte other than 0 or 1",
                    )),
                })
                .collect::<Result<_>>()?,
        ),
    })
}

fn levels_to(dtype: DType, levels: Vec<i32>) -> Result<Elements> {
    fn conv<T: TryFrom<i32>>(levels: &[i32]) -> Result<Vec<T>> {
        levels
            .iter()
            .map(|&v| T::try_from(v))
            .collect::<core::result::Result<Vec<T>, _>>()
            .map_err(|_| Error::Corrupt("lossless value outside the range of its dtype"))
    }
    Ok(match dtype {
        DType::I32 => Elements::I32(levels),
        DType::I64 => Elements::I64(levels.iter().map(|&v| i64::from(v)).collect()),
        DType::I8 => Elements::I8(conv(&levels)?),
        DType::I16 => Elements::I16(conv(&levels)?),
        DType::U8 => Elements::U8(conv(&levels)?),
        DType::U16 => Elements::U16(conv(&levels)?),
        DType::U32 => Elements::U32(conv(&levels)?),
        DType::U64 => Elements::U64(conv(&levels)?),
        DType::Bool => Elements::Bool(
            conv::<u8>(&levels)?
                .into_iter()
                .map(|b| match b {
                    0 => Ok(false),
                    1 => Ok(true),
                    _ => Err(Error::Corrupt("lossless bool value other than 0 or 1")),
                })
                .collect::<Result<_>>()?,
        ),
        DType::F16 | DType::BF16 | DType::F32 | DType::F64 => {
            return Err(Error::Corrupt("lossless method for a floating-point dtype"))
        }
    })
}

/// CRC32 lookup tables for slicing by 8 (`CRC_TABLES[0]` is the classic byte table).
const CRC_TABLES: [[u32; 256]; 8] = crc_tables();

// Evaluated at compile time, where an out-of-range index is a build error.
#[allow(clippy::indexing_slicing)]
const fn crc_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut s = 1;
    while s < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
            i += 1;
        }
        s += 1;
    }
    t
}

/// Table `s` at the low byte of `x` (a u8 index cannot be out of range).
#[inline(always)]
fn crc_at(s: usize, x: u32) -> u32 {
    CRC_TABLES
        .get(s)
        .and_then(|t| t.get((x & 0xFF) as usize))
        .copied()
        .unwrap_or(0)
}

/// CRC32 (IEEE 802.3, reflected), as zlib computes it; eight bytes per step.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        let lo = (w as u32) ^ c;
        let hi = (w >> 32) as u32;
        c = crc_at(7, lo)
            ^ crc_at(6, lo >> 8)
            ^ crc_at(5, lo >> 16)
            ^ crc_at(4, lo >> 24)
            ^ crc_at(3, hi)
            ^ crc_at(2, hi >> 8)
            ^ crc_at(1, hi >> 16)
            ^ crc_at(0, hi >> 24);
    }
    for &b in chunks.remainder() {
        c = crc_at(0, c ^ u32::from(b)) ^ (c >> 8);
    }
    !c
}

/// How the tensor table is stored in the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TableEncoding {
    /// The table bytes as they are.
    Plain = 0,
    /// The table's length, then the table compressed with DEFLATE (RFC 1951, no wrapper).
    Deflate = 1,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let low = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

fn zigzag(v: i32) -> u64 {
    u64::from(((v << 1) ^ (v >> 31)) as u32)
}

fn unzigzag(u: u64) -> Result<i32> {
    let u = u32::try_from(u).map_err(|_| Error::Corrupt("qp out of range"))?;
    Ok(((u >> 1) as i32) ^ -((u & 1) as i32))
}

/// Builds a container in memory.
#[derive(Default, Debug, Clone)]
pub struct ContainerWriter {
    metadata: Vec<(String, String)>,
    entries: Vec<TensorEntry>,
    names: std::collections::HashSet<String>,
    payload: Vec<u8>,
    payload_len: u64,
    measure_only: bool,
}

impl ContainerWriter {
    /// An empty container.
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer that only measures: payloads are checksummed and counted but not kept, so rate
    /// control can learn a file's size without holding a second copy of it.
    pub fn measuring() -> Self {
        Self {
            measure_only: true,
            ..Self::default()
        }
    }

    /// Adds a free-form metadata string.
    pub fn add_metadata(&mut self, key: &str, value: &str) -> Result<()> {
        if key.len() > MAX_KEY_LEN || value.len() > u32::MAX as usize {
            return Err(Error::InvalidParameter(
                "metadata key or value too long".into(),
            ));
        }
        self.metadata.push((key.to_owned(), value.to_owned()));
        Ok(())
    }

    /// Adds a tensor after the previous ones; `entry.offset`, `length` and `crc32` are filled in
    /// from `payload`, and fields its method does not use are set to 0.
    pub fn add_tensor(&mut self, entry: TensorEntry, payload: &[u8]) -> Result<()> {
        let mut entry = entry.normalized();
        entry.offset = self.payload_len;
        entry.length = payload.len() as u64;
        entry.validate().map_err(|e| {
            let why = match e {
                Error::Corrupt(why) => why.to_string(),
                other => other.to_string(),
            };
            Error::InvalidParameter(format!("tensor {:?}: {why}", entry.name))
        })?;
        if self.names.contains(&entry.name) {
            return Err(Error::InvalidParameter(format!(
                "duplicate tensor name {:?}",
                entry.name
            )));
        }
        entry.crc32 = crc32(payload);
        self.names.insert(entry.name.clone());
        if !self.measure_only {
            self.payload.extend_from_slice(payload);
        }
        self.payload_len += entry.length;
        self.entries.push(entry);
        Ok(())
    }

    /// The tensor table (metadata, names, descriptors, lengths, checksums).
    fn table(&self) -> Vec<u8> {
        let mut t = Vec::with_capacity(64 + 32 * self.entries.len());
        put_varint(&mut t, self.metadata.len() as u64);
        for (k, v) in &self.metadata {
            put_varint(&mut t, k.len() as u64);
            t.extend_from_slice(k.as_bytes());
            put_varint(&mut t, v.len() as u64);
            t.extend_from_slice(v.as_bytes());
        }
        put_varint(&mut t, self.entries.len() as u64);
        let mut prev: &[u8] = &[];
        for e in &self.entries {
            let name = e.name.as_bytes();
            let shared = prev.iter().zip(name).take_while(|(a, b)| a == b).count();
            let suffix = name.get(shared..).unwrap_or_default();
            put_varint(&mut t, shared as u64);
            put_varint(&mut t, suffix.len() as u64);
            t.extend_from_slice(suffix);
            prev = name;
        }
        for e in &self.entries {
            t.push(e.dtype as u8 | (e.method as u8) << 4 | u8::from(e.dq_flag) << 7);
            put_varint(&mut t, e.shape.len() as u64);
            for &d in &e.shape {
                put_varint(&mut t, d);
            }
            if e.method.is_cabac() {
                put_varint(&mut t, u64::from(e.num_gtx_flags));
            }
            if e.method.is_quantized() {
                put_varint(&mut t, zigzag(e.qp));
                t.push(e.qp_density);
            }
            if e.method.has_lambda() {
                t.extend_from_slice(&e.lambda.to_le_bytes());
            }
        }
        for e in self.entries.iter().filter(|e| e.method != Method::Raw) {
            put_varint(&mut t, e.length);
        }
        for e in &self.entries {
            t.extend_from_slice(&e.crc32.to_le_bytes());
        }
        t
    }

    /// The stored header for `encoding`, if a reader would accept it (size and expansion
    /// bounds).
    fn stored(&self, table: &[u8], encoding: TableEncoding) -> Option<Vec<u8>> {
        let mut h = vec![encoding as u8];
        match encoding {
            TableEncoding::Plain => h.extend_from_slice(table),
            TableEncoding::Deflate => {
                put_varint(&mut h, table.len() as u64);
                h.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(table, 9));
            }
        }
        let budget = (h.len() as u64).saturating_mul(MAX_EXPANSION);
        let names: u64 = self.entries.iter().map(|e| e.name.len() as u64).sum();
        let ok = h.len() as u64 <= MAX_HEADER_LEN
            && table.len() as u64 <= MAX_HEADER_LEN
            && table.len() as u64 <= budget
            && names <= budget;
        ok.then_some(h)
    }

    /// The stored header [`finish`](Self::finish) writes: the table plain or deflated,
    /// whichever is smaller.
    fn best_header(&self) -> Result<Vec<u8>> {
        let table = self.table();
        [TableEncoding::Plain, TableEncoding::Deflate]
            .into_iter()
            .filter_map(|enc| self.stored(&table, enc))
            .min_by_key(|h| h.len())
            .ok_or_else(|| Error::InvalidParameter("container header too large".into()))
    }

    /// Serializes the whole container, storing the table plain or deflated, whichever is
    /// smaller.
    pub fn finish(self) -> Result<Vec<u8>> {
        let header = self.best_header()?;
        self.assemble(&header)
    }

    /// The length in bytes of the file [`finish`](Self::finish) would write.
    pub fn finished_len(&self) -> Result<u64> {
        let header = self.best_header()?.len() as u64;
        Ok(PREAMBLE as u64 + header + 4 + self.payload_len)
    }

    /// Serializes the whole container with the table stored as `encoding`.
    pub fn finish_with(self, encoding: TableEncoding) -> Result<Vec<u8>> {
        let table = self.table();
        let header = self
            .stored(&table, encoding)
            .ok_or_else(|| Error::InvalidParameter("container header too large".into()))?;
        self.assemble(&header)
    }

    /// What the file [`finish`](Self::finish) writes holds before the payloads: preamble,
    /// stored header and its checksum. A [`measuring`](Self::measuring) writer gives it too,
    /// so a caller that holds the payloads can write this and then the payloads, in the order
    /// they were added, without a second copy of them in memory.
    pub fn prefix(&self) -> Result<Vec<u8>> {
        let header = self.best_header()?;
        Ok(self.prefix_with(&header, 0))
    }

    /// The prefix for `header`, with room for `room` more bytes.
    fn prefix_with(&self, header: &[u8], room: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(PREAMBLE + header.len() + 4 + room);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&MAJOR.to_le_bytes());
        out.extend_from_slice(&MINOR.to_le_bytes());
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(header);
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    fn assemble(&self, header: &[u8]) -> Result<Vec<u8>> {
        if self.measure_only {
            return Err(Error::InvalidParameter(
                "a measuring writer keeps no payloads".into(),
            ));
        }
        let mut out = self.prefix_with(header, self.payload.len());
        out.extend_from_slice(&self.payload);
        Ok(out)
    }
}

/// Bounds-checked reader over the table.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(Error::Corrupt("header field out of range"))?;
        let s = self
            .data
            .get(self.pos..end)
            .ok_or(Error::Corrupt("header is shorter than its fields"))?;
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        self.take(N)?
            .try_into()
            .map_err(|_| Error::Corrupt("header is shorter than its fields"))
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(u8::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    /// LEB128, at most 10 bytes and 64 bits.
    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            if i == 9 && b > 1 {
                return Err(Error::Corrupt("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Error::Corrupt("varint overflows 64 bits"))
    }
    /// A varint that must be at most `max`.
    fn bounded(&mut self, max: usize, what: &'static str) -> Result<usize> {
        usize::try_from(self.varint()?)
            .ok()
            .filter(|&n| n <= max)
            .ok_or(Error::Corrupt(what))
    }
    fn str(&mut self, len: usize) -> Result<String> {
        String::from_utf8(self.take(len)?.to_vec())
            .map_err(|_| Error::Corrupt("string is not UTF-8"))
    }
    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }
}

/// Bytes a reader needs from the start of a file to parse its header: the fixed preamble first
/// (`PREAMBLE_LEN` bytes), then `header_span(preamble)` bytes in all.
pub const PREAMBLE_LEN: usize = PREAMBLE;

/// Major version, minor version and stored header length from a preamble.
fn preamble_fields(preamble: &[u8]) -> Result<(u16, u16, u64)> {
    let p: &[u8; PREAMBLE] = preamble
        .get(..PREAMBLE)
        .and_then(|p| p.try_into().ok())
        .ok_or(Error::Truncated)?;
    let [m0, m1, m2, m3, m4, m5, m6, m7, v0, v1, n0, n1, h0, h1, h2, h3] = *p;
    if [m0, m1, m2, m3, m4, m5, m6, m7] != MAGIC {
        return Err(Error::Corrupt("not an nncabac file (bad magic)"));
    }
    let major = u16::from_le_bytes([v0, v1]);
    let minor = u16::from_le_bytes([n0, n1]);
    Ok((
        major,
        minor,
        u64::from(u32::from_le_bytes([h0, h1, h2, h3])),
    ))
}

/// Total length of preamble + header + header checksum, from the first [`PREAMBLE_LEN`] bytes
/// (validates magic, major version and the header-length bound).
pub fn header_span(preamble: &[u8]) -> Result<usize> {
    let (major, minor, hlen) = preamble_fields(preamble)?;
    if major != MAJOR {
        return Err(Error::Unsupported(format!(
            "format version {major}.{minor} (this reader: {MAJOR}.x)"
        )));
    }
    if hlen > MAX_HEADER_LEN {
        return Err(Error::Corrupt("header length exceeds the limit"));
    }
    Ok(PREAMBLE + hlen as usize + 4)
}

/// The parsed, validated header of a file: metadata and tensor table.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Free-form metadata, in file order.
    pub metadata: Vec<(String, String)>,
    /// Tensor table, in file (and payload) order.
    pub entries: Vec<TensorEntry>,
    /// File offset of the payload area (entry offsets are relative to it).
    pub payload_start: u64,
    /// Minor version of the file.
    pub minor: u16,
}

/// The table bytes of a stored header (its encoding byte first), inflated if deflated.
fn table_bytes(stored: &[u8]) -> Result<Cow<'_, [u8]>> {
    let (&encoding, body) = stored
        .split_first()
        .ok_or(Error::Corrupt("header is empty"))?;
    match encoding {
        0 => Ok(Cow::Borrowed(body)),
        1 => {
            let mut c = Cursor { data: body, pos: 0 };
            let budget = (stored.len() as u64).saturating_mul(MAX_EXPANSION);
            let len = c.varint()?;
            if len > MAX_HEADER_LEN || len > budget {
                return Err(Error::Corrupt("inflated header length exceeds the limit"));
            }
            let deflated = body.get(c.pos..).unwrap_or_default();
            Ok(Cow::Owned(inflate_exact(deflated, len as usize)?))
        }
        _ => Err(Error::Corrupt("unknown header encoding")),
    }
}

/// Inflates a raw DEFLATE stream that must decode to exactly `len` bytes and use all its input.
fn inflate_exact(input: &[u8], len: usize) -> Result<Vec<u8>> {
    use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
    use miniz_oxide::inflate::TINFLStatus;
    let mut out = vec![0u8; len];
    let mut state = Box::<DecompressorOxide>::default();
    let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    let (status, used, written) = decompress(&mut state, input, &mut out, 0, flags);
    match status {
        TINFLStatus::Done if used == input.len() && written == len => Ok(out),
        TINFLStatus::Done | TINFLStatus::HasMoreOutput => Err(Error::Corrupt(
            "inflated header length does not match the stored length",
        )),
        _ => Err(Error::Corrupt("header is not a valid DEFLATE stream")),
    }
}

impl Header {
    /// Parses the header from the first `header_span` bytes of a file of `file_len` bytes,
    /// checking that the payloads exactly fill the rest of the file; payload bytes are not
    /// needed.
    pub fn parse(head: &[u8], file_len: u64) -> Result<Header> {
        let span = header_span(head)?;
        let (_, minor, _) = preamble_fields(head)?;
        let hend = span - 4;
        let covered = head.get(..hend).ok_or(Error::Truncated)?;
        let crc = head
            .get(hend..span)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or(Error::Truncated)?;
        if crc32(covered) != crc {
            return Err(Error::Corrupt("header checksum mismatch"));
        }
        let area = file_len.checked_sub(span as u64).ok_or(Error::Truncated)?;
        let stored = covered.get(PREAMBLE..).unwrap_or_default();
        let table = table_bytes(stored)?;
        let budget = (stored.len() as u64).saturating_mul(MAX_EXPANSION);
        let (metadata, entries) = parse_table(&table, budget, area)?;
        Ok(Header {
            metadata,
            entries,
            payload_start: span as u64,
            minor,
        })
    }

    /// The entry called `name`.
    pub fn entry(&self, name: &str) -> Result<&TensorEntry> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| Error::InvalidParameter(format!("no tensor named {name:?}")))
    }
}

type Table = (Vec<(String, String)>, Vec<TensorEntry>);

/// Parses and validates a table; `names_budget` bounds the total name length, `area` is the
/// size of the payload area the entries must exactly fill.
fn parse_table(table: &[u8], names_budget: u64, area: u64) -> Result<Table> {
    let mut c = Cursor {
        data: table,
        pos: 0,
    };
    let nmeta = c.bounded(
        c.remaining() / MIN_META_BYTES,
        "metadata count exceeds the header",
    )?;
    let mut metadata = Vec::with_capacity(nmeta);
    for _ in 0..nmeta {
        let k = c.bounded(MAX_KEY_LEN, "metadata key too long")?;
        let key = c.str(k)?;
        let v = c.bounded(u32::MAX as usize, "metadata value too long")?;
        metadata.push((key, c.str(v)?));
    }
    let count = c.bounded(
        c.remaining() / MIN_ENTRY_BYTES,
        "tensor count exceeds the header",
    )?;

    // Names, each sharing a prefix with the one before.
    let mut names: Vec<String> = Vec::with_capacity(count);
    let mut total = 0u64;
    for _ in 0..count {
        let prev = names.last().map(String::as_bytes).unwrap_or_default();
        let shared = c.bounded(prev.len(), "name shares more than the previous name")?;
        let suffix_len = c.bounded(MAX_NAME_LEN, "tensor name too long")?;
        let len = shared.saturating_add(suffix_len);
        total = total.saturating_add(len as u64);
        if len > MAX_NAME_LEN || total > names_budget {
            return Err(Error::Corrupt("tensor names too long for the header"));
        }
        let mut name = Vec::with_capacity(len);
        name.extend_from_slice(prev.get(..shared).unwrap_or_default());
        name.extend_from_slice(c.take(suffix_len)?);
        names.push(String::from_utf8(name).map_err(|_| Error::Corrupt("string is not UTF-8"))?);
    }

    // Descriptors.
    let mut entries = Vec::with_capacity(count);
    for name in names {
        let kind = c.u8()?;
        let dtype = DType::from_code(kind & 0x0F)?;
        let method = Method::from_code((kind >> 4) & 0x07)?;
        let ndim = c.bounded(MAX_DIMS, "too many dimensions")?;
        let shape = (0..ndim).map(|_| c.varint()).collect::<Result<Vec<_>>>()?;
        let num_gtx_flags = if method.is_cabac() {
            c.bounded(u16::MAX as usize, "num_gtx_flags out of range")? as u16
        } else {
            0
        };
        let (qp, qp_density) = if method.is_quantized() {
            (unzigzag(c.varint()?)?, c.u8()?)
        } else {
            (0, 0)
        };
        let lambda = if method.has_lambda() {
            f32::from_le_bytes(c.array()?)
        } else {
            0.0
        };
        entries.push(TensorEntry {
            name,
            dtype,
            shape,
            method,
            dq_flag: kind >> 7 == 1,
            num_gtx_flags,
            qp,
            qp_density,
            lambda,
            offset: 0,
            length: 0,
            crc32: 0,
        });
    }

    // Lengths (implied for raw payloads), offsets and checksums.
    let mut offset = 0u64;
    for e in entries.iter_mut() {
        e.length = if e.method == Method::Raw {
            e.num_elements()?
                .checked_mul(e.dtype.size())
                .ok_or(Error::Corrupt("tensor element count too large"))?
        } else {
            c.varint()?
        };
        e.offset = offset;
        offset = offset
            .checked_add(e.length)
            .ok_or(Error::Corrupt("payload lengths overflow"))?;
    }
    for e in entries.iter_mut() {
        e.crc32 = c.u32()?;
        e.validate()?;
    }
    if c.remaining() != 0 {
        return Err(Error::Corrupt("trailing bytes in the header"));
    }
    if offset > area {
        return Err(Error::Truncated);
    }
    if offset < area {
        return Err(Error::Corrupt("bytes after the last payload"));
    }
    let mut sorted: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w.first() == w.get(1)) {
        return Err(Error::Corrupt("duplicate tensor name"));
    }
    Ok((metadata, entries))
}

/// Checks a payload read for `entry` against its length and checksum.
pub fn verify_payload(entry: &TensorEntry, bytes: &[u8]) -> Result<()> {
    if bytes.len() as u64 != entry.length {
        return Err(Error::Truncated);
    }
    if crc32(bytes) != entry.crc32 {
        return Err(Error::Corrupt("payload checksum mismatch"));
    }
    Ok(())
}

/// A parsed, validated container over borrowed bytes; payloads are verified when read.
#[derive(Debug, Clone)]
pub struct Container<'a> {
    header: Header,
    payload: &'a [u8],
}

impl<'a> Container<'a> {
    /// Parses and validates a whole file held in memory.
    pub fn parse(data: &'a [u8]) -> Result<Self> {
        let header = Header::parse(data, data.len() as u64)?;
        let payload = usize::try_from(header.payload_start)
            .ok()
            .and_then(|start| data.get(start..))
            .ok_or(Error::Truncated)?;
        Ok(Container { header, payload })
    }

    /// The parsed header.
    pub fn header(&self) -> &Header {
        &self.header
    }
    /// The parsed header, by value.
    pub fn into_header(self) -> Header {
        self.header
    }
    /// Free-form metadata, in file order.
    pub fn metadata(&self) -> &[(String, String)] {
        &self.header.metadata
    }
    /// Tensor table, in file order.
    pub fn entries(&self) -> &[TensorEntry] {
        &self.header.entries
    }
    /// The entry called `name`.
    pub fn entry(&self, name: &str) -> Result<&TensorEntry> {
        self.header.entry(name)
    }
    /// The payload of `entry`, after verifying its checksum.
    pub fn payload(&self, entry: &TensorEntry) -> Result<&'a [u8]> {
        let end = entry
            .offset
            .checked_add(entry.length)
            .ok_or(Error::Truncated)?;
        let range = usize::try_from(entry.offset)
            .ok()
            .zip(usize::try_from(end).ok());
        let bytes = range
            .and_then(|(start, end)| self.payload.get(start..end))
            .ok_or(Error::Truncated)?;
        verify_payload(entry, bytes)?;
        Ok(bytes)
    }
    /// Verifies and decodes one tensor (see [`TensorEntry::decode`]).
    pub fn decode(&self, entry: &TensorEntry) -> Result<Elements> {
        entry.decode(self.payload(entry)?)
    }
    /// Verifies and decodes every tensor, in parallel with the `parallel` feature (largest
    /// payloads first; `threads` limits the workers, None: all cores); results in table order.
    pub fn decode_all(&self, threads: Option<usize>) -> Vec<Result<Elements>> {
        let entries = self.entries();
        let sizes: Vec<u64> = entries.iter().map(|e| e.length).collect();
        map_largest_first(&sizes, threads, |i| {
            entries
                .get(i)
                .ok_or(Error::Corrupt("no such entry"))
                .and_then(|e| self.decode(e))
        })
    }
}

/// Decodes many (entry, payload) pairs whose payloads the caller has verified, in parallel
/// like [`Container::decode_all`]; results in input order.
pub fn decode_entries(
    items: &[(&TensorEntry, &[u8])],
    threads: Option<usize>,
) -> Vec<Result<Elements>> {
    let sizes: Vec<u64> = items.iter().map(|(e, _)| e.length).collect();
    map_largest_first(&sizes, threads, |i| {
        items
            .get(i)
            .ok_or(Error::Corrupt("no such entry"))
            .and_then(|(e, p)| e.decode(p))
    })
}

/// `f(0..sizes.len())`, the largest sizes started first so that one big tensor does not finish
/// last on its own; results in index order.
fn map_largest_first<T: Send>(
    sizes: &[u64],
    threads: Option<usize>,
    f: impl Fn(usize) -> T + Sync + Send,
) -> Vec<T> {
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        if sizes.len() <= 1 || threads == Some(1) {
            return (0..sizes.len()).map(f).collect();
        }
        let mut order: Vec<usize> = (0..sizes.len()).collect();
        order.sort_unstable_by_key(|&i| core::cmp::Reverse(sizes.get(i).copied().unwrap_or(0)));
        let run = || {
            order
                .par_iter()
                .with_max_len(1)
                .map(|&i| (i, f(i)))
                .collect::<Vec<_>>()
        };
        let mut done = crate::batch::in_pool(threads, run);
        done.sort_unstable_by_key(|(i, _)| *i);
        done.into_iter().map(|(_, t)| t).collect()
    }
    #[cfg(not(feature = "parallel"))]
    {
        let _ = threads;
        (0..sizes.len()).map(f).collect()
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn entry(name: &str, method: Method, shape: Vec<u64>) -> TensorEntry {
        TensorEntry {
            name: name.into(),
            dtype: DType::F32,
            shape,
            method,
            dq_flag: false,
            num_gtx_flags: 11,
            qp: -38,
            qp_density: 2,
            lambda: 0.5,
            offset: 0,
            length: 0,
            crc32: 0,
        }
    }

    fn coded(levels: &[i32], shape: &[usize], dq: bool) -> Vec<u8> {
        let mut enc = crate::Encoder::new();
        let p = crate::LayerParams {
            dq_flag: dq,
            general_profile_idc: 0,
            ..crate::LayerParams::default()
        };
        enc.encode_layer(levels, shape, &p, true).unwrap();
        enc.finish()
    }

    fn writer() -> ContainerWriter {
        let mut w = ContainerWriter::new();
        w.add_metadata("framework", "pt").unwrap();
        w.add_tensor(
            entry("a", Method::Raw, vec![2]),
            &[0, 0, 128, 63, 0, 0, 0, 64],
        )
        .unwrap();
        w.add_tensor(
            entry("layer.b", Method::Uniform, vec![3, 1]),
            &coded(&[1, -2, 0], &[3, 1], false),
        )
        .unwrap();
        let mut t = entry("layer.c", Method::Trellis, vec![2, 2]);
        t.dq_flag = true;
        t.lambda = 1.0;
        w.add_tensor(t, &coded(&[2, 0, -1, 3], &[2, 2], true))
            .unwrap();
        let mut i = entry("steps", Method::Lossless, vec![]);
        i.dtype = DType::I64;
        w.add_tensor(i, &coded(&[7], &[], false)).unwrap();
        w
    }

    fn sample() -> Vec<u8> {
        writer().finish().unwrap()
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Elements>> {
        let c = Container::parse(bytes)?;
        c.decode_all(None).into_iter().collect()
    }

    #[test]
    fn invalid_step_sizes_are_corrupt_entries() {
        for (qp, qp_density) in [(-38, 130u8), (-38, 8), (i32::MAX, 2), (i32::MIN, 2)] {
            let mut e = entry("w", Method::Uniform, vec![2]);
            (e.qp, e.qp_density, e.length) = (qp, qp_density, 4);
            assert!(
                matches!(e.validate(), Err(Error::Corrupt(_))),
                "{qp} {qp_density}"
            );
        }
        let mut e = entry("w", Method::Uniform, vec![2]);
        e.length = 4;
        assert!(e.validate().is_ok());
    }

    #[test]
    fn measuring_writer_predicts_the_length() {
        let fill = |w: &mut ContainerWriter| {
            w.add_metadata("k", "v").unwrap();
            for i in 0..40u8 {
                let name = format!("layer{i}.weight");
                let payload = vec![i; 3 + 37 * i as usize];
                w.add_tensor(entry(&name, Method::Uniform, vec![4, 5]), &payload)
                    .unwrap();
            }
        };
        let (mut w, mut m) = (ContainerWriter::new(), ContainerWriter::measuring());
        fill(&mut w);
        fill(&mut m);
        let len = m.finished_len().unwrap();
        assert!(m.finish().is_err());
        assert_eq!(w.finish().unwrap().len() as u64, len);
    }

    #[test]
    fn prefix_and_payloads_are_the_finished_file() {
        for count in [0usize, 1, 2, 40] {
            let payloads: Vec<Vec<u8>> = (0..count)
                .map(|i| vec![i as u8; if i == 1 { 0 } else { 3 + 37 * i }])
                .collect();
            let (mut w, mut m) = (ContainerWriter::new(), ContainerWriter::measuring());
            for x in [&mut w, &mut m] {
                x.add_metadata("framework", "pt").unwrap();
                for (i, p) in payloads.iter().enumerate() {
                    let e = entry(&format!("layer{i}.weight"), Method::Uniform, vec![4, 5]);
                    x.add_tensor(e, p).unwrap();
                }
            }
            let mut streamed = m.prefix().unwrap();
            assert_eq!(w.prefix().unwrap(), streamed);
            payloads.iter().for_each(|p| streamed.extend_from_slice(p));
            let file = w.finish().unwrap();
            assert_eq!(streamed, file, "{count} tensors");
            let c = Container::parse(&file).unwrap();
            for (i, p) in payloads.iter().enumerate() {
                let e = c.entry(&format!("layer{i}.weight")).unwrap();
                assert_eq!(c.payload(e).unwrap(), &p[..]);
            }
        }
    }

    #[test]
    fn crc_matches_zlib() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        // Slicing by 8 equals the bytewise definition at every length and alignment.
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7919 % 251) as u8).collect();
        for start in 0..9 {
            for end in start..data.len() {
                let mut c = !0u32;
                for &b in &data[start..end] {
                    c = CRC_TABLES[0][((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
                }
                assert_eq!(crc32(&data[start..end]), !c, "{start}..{end}");
            }
        }
    }

    #[test]
    fn varints_round_trip_and_reject_overflow() {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut c = Cursor { data: &b, pos: 0 };
            assert_eq!(c.varint().unwrap(), v);
            assert_eq!(c.remaining(), 0);
        }
        for q in [0, 1, -1, -38, 75, i32::MIN, i32::MAX] {
            assert_eq!(unzigzag(zigzag(q)).unwrap(), q);
        }
        let mut over = vec![0xFF; 9];
        over.push(0x02);
        assert!(Cursor {
            data: &over,
            pos: 0
        }
        .varint()
        .is_err());
        assert!(Cursor {
            data: &[0x80; 11],
            pos: 0
        }
        .varint()
        .is_err());
        assert!(unzigzag(1 << 32).is_err());
    }

    #[test]
    fn round_trip_both_encodings() {
        for enc in [TableEncoding::Plain, TableEncoding::Deflate] {
            let w = writer();
            let want: Vec<TensorEntry> = w.entries.clone();
            let bytes = w.finish_with(enc).unwrap();
            assert_eq!(bytes[PREAMBLE], enc as u8);
            let c = Container::parse(&bytes).unwrap();
            assert_eq!(c.metadata(), &[("framework".to_string(), "pt".to_string())]);
            assert_eq!(c.entries(), &want[..]);
            let b = c.entry("layer.b").unwrap();
            assert_eq!((b.qp, b.qp_density, b.lambda), (-38, 2, 0.0)); // uniform: no λ
            assert_eq!(c.entry("layer.c").unwrap().lambda, 1.0);
            let a = c.entry("a").unwrap();
            assert_eq!((a.num_gtx_flags, a.qp, a.lambda), (0, 0, 0.0));
            assert_eq!(c.payload(a).unwrap(), &[0, 0, 128, 63, 0, 0, 0, 64]);
            assert!(c.entry("zz").is_err());
            let all = read_all(&bytes).unwrap();
            assert_eq!(all[0], Elements::F32(vec![1.0, 2.0]));
            let step = crate::step_size(-38, 2).unwrap();
            assert_eq!(all[1], Elements::F32(vec![step, -2.0 * step, 0.0]));
            assert_eq!(all[3], Elements::I64(vec![7]));
            assert_eq!(all[2].len(), 4);
        }
    }

    #[test]
    fn payloads_are_contiguous_in_table_order() {
        let bytes = sample();
        let c = Container::parse(&bytes).unwrap();
        let mut next = 0;
        for e in c.entries() {
            assert_eq!(e.offset, next);
            next += e.length;
        }
        assert_eq!(c.header().payload_start + next, bytes.len() as u64);
    }

    #[test]
    fn every_truncation_extension_and_bit_flip_is_caught() {
        for enc in [TableEncoding::Plain, TableEncoding::Deflate] {
            let bytes = writer().finish_with(enc).unwrap();
            for cut in 0..bytes.len() {
                assert!(read_all(&bytes[..cut]).is_err(), "truncation at {cut}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(
                Container::parse(&longer).err(),
                Some(Error::Corrupt("bytes after the last payload"))
            );
            for i in 0..bytes.len() {
                for bit in 0..8 {
                    let mut b = bytes.clone();
                    b[i] ^= 1 << bit;
                    assert!(read_all(&b).is_err(), "flip of byte {i} bit {bit}");
                }
            }
        }
    }

    /// A file around `table` with a valid header checksum and `payload` after it.
    fn forged(table: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&MAJOR.to_le_bytes());
        out.extend_from_slice(&MINOR.to_le_bytes());
        out.extend_from_slice(&(table.len() as u32 + 1).to_le_bytes());
        out.push(0);
        out.extend_from_slice(table);
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn table_of(w: &ContainerWriter) -> Vec<u8> {
        w.table()
    }

    #[test]
    fn hostile_tables_with_valid_checksums_are_refused() {
        let parse = |t: &[u8], p: &[u8]| Container::parse(&forged(t, p)).err();
        let corrupt = |why| Some(Error::Corrupt(why));
        // 10^12 elements claimed for a 4-byte coded payload.
        let mut w = ContainerWriter::new();
        w.entries.push(TensorEntry {
            length: 4,
            ..entry("x", Method::Uniform, vec![1_000_000, 1_000_000])
        });
        assert_eq!(
            parse(&table_of(&w), &[0; 4]),
            corrupt("element count impossible for the payload length")
        );
        // A huge tensor count in a tiny table.
        assert_eq!(
            parse(&[0, 0xFF, 0xFF, 0xFF, 0x7F], &[]),
            corrupt("tensor count exceeds the header")
        );
        // A name sharing more than the previous name has.
        assert_eq!(
            parse(&[0, 1, 3, 1, b'a', 2, 0, 0, 0, 0, 0], &[]),
            corrupt("name shares more than the previous name")
        );
        // Duplicate names.
        let mut w = ContainerWriter::new();
        w.entries.push(entry("d", Method::Raw, vec![0]));
        w.entries.push(entry("d", Method::Raw, vec![0]));
        assert_eq!(parse(&table_of(&w), &[]), corrupt("duplicate tensor name"));
        // Payload lengths beyond the file, or short of it.
        let mut w = ContainerWriter::new();
        w.entries.push(TensorEntry {
            length: 10,
            ..entry("x", Method::Uniform, vec![4])
        });
        let t = table_of(&w);
        assert_eq!(parse(&t, &[0; 9]), Some(Error::Truncated));
        assert_eq!(parse(&t, &[0; 11]), corrupt("bytes after the last payload"));
        assert_eq!(
            Container::parse(&forged(&t, &[0; 10]))
                .unwrap()
                .decode_all(None)[0],
            Err(Error::Corrupt("payload checksum mismatch"))
        );
        // Quantized integers and lossless floats.
        let mut w = ContainerWriter::new();
        w.entries.push(TensorEntry {
            dtype: DType::I32,
            length: 2,
            ..entry("x", Method::Uniform, vec![1])
        });
        assert_eq!(
            parse(&table_of(&w), &[0; 2]),
            corrupt("quantized method for an integer dtype")
        );
        // Unknown header encoding.
        let mut bad = forged(&[0, 0], &[]);
        bad[PREAMBLE] = 7;
        let n = bad.len() - 4;
        let crc = crc32(&bad[..n]);
        bad[n..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            Container::parse(&bad).err(),
            corrupt("unknown header encoding")
        );
    }

    #[test]
    fn deflate_bombs_are_refused_before_allocating() {
        // Claims a 200 MiB table from a 12-byte header: over 64 × the stored size.
        let mut stored = vec![1u8];
        put_varint(&mut stored, 200 << 20);
        stored.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(&[0; 16], 9));
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&MAJOR.to_le_bytes());
        out.extend_from_slice(&MINOR.to_le_bytes());
        out.extend_from_slice(&(stored.len() as u32).to_le_bytes());
        out.extend_from_slice(&stored);
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(
            Container::parse(&out).err(),
            Some(Error::Corrupt("inflated header length exceeds the limit"))
        );
    }

    #[test]
    fn hostile_lossless_values_are_refused() {
        let mut w = ContainerWriter::new();
        let mut e = entry("small", Method::Lossless, vec![2]);
        e.dtype = DType::I8;
        w.add_tensor(e, &coded(&[1, 300], &[2], false)).unwrap();
        let mut b = entry("flag", Method::Lossless, vec![1]);
        b.dtype = DType::Bool;
        w.add_tensor(b, &coded(&[2], &[1], false)).unwrap();
        let mut r = entry("rawbool", Method::Raw, vec![2]);
        r.dtype = DType::Bool;
        w.add_tensor(r, &[1, 5]).unwrap();
        let mut u = entry("unsigned", Method::Lossless, vec![1]);
        u.dtype = DType::U64;
        w.add_tensor(u, &coded(&[-1], &[1], false)).unwrap();
        let bytes = w.finish().unwrap();
        let c = Container::parse(&bytes).unwrap();
        for r in c.decode_all(Some(2)) {
            assert!(matches!(r, Err(Error::Corrupt(_))), "{r:?}");
        }
    }

    #[test]
    fn raw_dtypes_decode_to_their_values() {
        let mut w = ContainerWriter::new();
        let cases: [(DType, &[u8], Elements); 5] = [
            (DType::F16, &[0, 60], Elements::U16(vec![0x3C00])),
            (DType::I64, &[255; 8], Elements::I64(vec![-1])),
            (
                DType::U32,
                &[1, 0, 0, 128],
                Elements::U32(vec![0x8000_0001]),
            ),
            (DType::Bool, &[1], Elements::Bool(vec![true])),
            (DType::F64, &2.5f64.to_le_bytes(), Elements::F64(vec![2.5])),
        ];
        for (i, (dtype, bytes, _)) in cases.iter().enumerate() {
            let n = bytes.len() as u64 / dtype.size();
            let e = TensorEntry {
                dtype: *dtype,
                ..entry(&format!("t{i}"), Method::Raw, vec![n])
            };
            w.add_tensor(e, bytes).unwrap();
        }
        let out = read_all(&w.finish().unwrap()).unwrap();
        for (got, (_, _, want)) in out.iter().zip(&cases) {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn header_parses_from_the_head_alone() {
        let bytes = sample();
        let span = header_span(&bytes[..PREAMBLE_LEN]).unwrap();
        let h = Header::parse(&bytes[..span], bytes.len() as u64).unwrap();
        let b = h.entry("layer.b").unwrap();
        let start = (h.payload_start + b.offset) as usize;
        verify_payload(b, &bytes[start..start + b.length as usize]).unwrap();
        assert!(verify_payload(b, &bytes[start..start + 3]).is_err());
        // A file shorter than its table says is refused before any payload is read.
        assert_eq!(
            Header::parse(&bytes[..span], bytes.len() as u64 - 1),
            Err(Error::Truncated)
        );
        let mut newer = bytes.clone();
        newer[8] = 3;
        assert!(matches!(header_span(&newer), Err(Error::Unsupported(_))));
        newer[8] = 1;
        assert!(matches!(header_span(&newer), Err(Error::Unsupported(_))));
        let mut huge = bytes.clone();
        huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(header_span(&huge), Err(Error::Corrupt(_))));
        assert_eq!(
            header_span(&bytes[..PREAMBLE_LEN - 1]),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn header_costs_a_few_bytes_per_tensor() {
        // 300 tensors named like a model's: the deflated table averages under 12 bytes each.
        let mut w = ContainerWriter::new();
        for i in 0..300 {
            let name = format!("layer{}.{}.bn{}.running_mean", i / 30, i % 30 / 3, i % 3);
            let e = entry(&name, Method::Raw, vec![16]);
            w.add_tensor(e, &[0; 64]).unwrap();
        }
        let bytes = w.finish().unwrap();
        let span = header_span(&bytes).unwrap();
        assert!(span < 300 * 12, "header of {span} bytes");
        assert_eq!(Container::parse(&bytes).unwrap().entries().len(), 300);
    }

    #[test]
    fn writer_rejects_bad_tables() {
        let mut w = ContainerWriter::new();
        w.add_tensor(entry("x", Method::Uniform, vec![1]), &[0, 0])
            .unwrap();
        assert!(w
            .add_tensor(entry("x", Method::Uniform, vec![1]), &[0, 0])
            .is_err());
        assert!(w
            .add_tensor(entry("r", Method::Raw, vec![3]), &[0; 8])
            .is_err());
        assert!(w
            .add_tensor(entry("big", Method::Uniform, vec![1 << 30, 1 << 30]), &[0])
            .is_err());
        let mut dq = entry("dq", Method::Lossless, vec![1]);
        dq.dtype = DType::I32;
        dq.dq_flag = true;
        assert!(w.add_tensor(dq, &[0, 0]).is_err());
        let mut int = entry("int", Method::Trellis, vec![1]);
        int.dtype = DType::I64;
        assert!(w.add_tensor(int, &[0, 0]).is_err());
        assert!(w
            .add_tensor(
                entry(&"n".repeat(MAX_NAME_LEN + 1), Method::Uniform, vec![1]),
                &[0]
            )
            .is_err());
        // The failed additions left the container as it was.
        let bytes = w.finish().unwrap();
        assert_eq!(Container::parse(&bytes).unwrap().entries().len(), 1);
    }
}
