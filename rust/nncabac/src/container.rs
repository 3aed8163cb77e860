//! The nncabac file format: a bounded, checksummed header with a tensor table, followed by
//! independently decodable payloads (see `docs/format.md`).
//!
//! Readers trust nothing: every length is bounded before use, offsets must lie inside the file
//! and must not overlap, and each payload's CRC32 is verified when it is read.

use crate::error::{Error, Result};

/// File magic.
pub const MAGIC: [u8; 8] = *b"NNCABAC\0";
/// Major version written; readers reject other majors.
pub const MAJOR: u16 = 1;
/// Minor version written; readers accept any minor of their major.
pub const MINOR: u16 = 0;
/// Largest header accepted (bytes).
pub const MAX_HEADER_LEN: u64 = 256 << 20;
/// Most dimensions a tensor may have.
pub const MAX_DIMS: usize = 32;
/// Largest element count of one tensor (2^40).
pub const MAX_ELEMENTS: u64 = 1 << 40;
const PREAMBLE: usize = 20;

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
    /// numpy-style name (`"float32"`, `"bfloat16"`, ...).
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
    /// Parses a numpy-style name.
    pub fn from_name(name: &str) -> Result<Self> {
        Self::NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| Self::ALL[i])
            .ok_or_else(|| Error::InvalidParameter(format!("unknown dtype {name:?}")))
    }
    fn from_code(code: u8) -> Result<Self> {
        Self::ALL
            .get(code as usize)
            .copied()
            .ok_or(Error::Corrupt("unknown dtype code"))
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
        Self::NAMES[self as usize]
    }
    /// Parses a name.
    pub fn from_name(name: &str) -> Result<Self> {
        Self::NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| Self::ALL[i])
            .ok_or_else(|| Error::InvalidParameter(format!("unknown coding method {name:?}")))
    }
    fn from_code(code: u8) -> Result<Self> {
        Self::ALL
            .get(code as usize)
            .copied()
            .ok_or(Error::Corrupt("unknown coding method"))
    }
    /// Whether the payload is a CABAC stream of one layer.
    pub fn is_cabac(self) -> bool {
        self != Method::Raw
    }
}

/// One tensor of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorEntry {
    /// Unique name (UTF-8, at most 65535 bytes).
    pub name: String,
    /// Original element type.
    pub dtype: DType,
    /// Shape (row-major).
    pub shape: Vec<u64>,
    /// Coding method of the payload.
    pub method: Method,
    /// Dependent quantization flag of the CABAC layer.
    pub dq_flag: bool,
    /// Greater-than flags of the CABAC layer.
    pub num_gtx_flags: u16,
    /// Quantization parameter (step size with `qp_density`).
    pub qp: i32,
    /// Quantization parameter density.
    pub qp_density: u8,
    /// Rate-distortion trade-off used (informative).
    pub lambda: f32,
    /// Payload offset from the start of the payload area.
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
}

/// CRC32 (IEEE 802.3, reflected), as zlib computes it.
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
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
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !0u32;
    for &b in data {
        c = TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

/// Builds a container in memory.
#[derive(Default, Debug, Clone)]
pub struct ContainerWriter {
    metadata: Vec<(String, String)>,
    entries: Vec<TensorEntry>,
    payload: Vec<u8>,
}

impl ContainerWriter {
    /// An empty container.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a free-form metadata string.
    pub fn add_metadata(&mut self, key: &str, value: &str) -> Result<()> {
        if key.len() > u16::MAX as usize || value.len() > u32::MAX as usize {
            return Err(Error::InvalidParameter(
                "metadata key or value too long".into(),
            ));
        }
        self.metadata.push((key.to_owned(), value.to_owned()));
        Ok(())
    }

    /// Adds a tensor; `entry.offset`, `length` and `crc32` are filled in from `payload`.
    pub fn add_tensor(&mut self, mut entry: TensorEntry, payload: &[u8]) -> Result<()> {
        if entry.name.len() > u16::MAX as usize {
            return Err(Error::InvalidParameter(
                "tensor name longer than 65535 bytes".into(),
            ));
        }
        if self.entries.iter().any(|e| e.name == entry.name) {
            return Err(Error::InvalidParameter(format!(
                "duplicate tensor name {:?}",
                entry.name
            )));
        }
        if entry.shape.len() > MAX_DIMS {
            return Err(Error::InvalidParameter(format!(
                "more than {MAX_DIMS} dimensions"
            )));
        }
        let n = entry
            .num_elements()
            .map_err(|_| Error::InvalidParameter("too many elements".into()))?;
        if entry.method == Method::Raw && n * entry.dtype.size() != payload.len() as u64 {
            return Err(Error::InvalidParameter(format!(
                "raw payload of {:?} has the wrong size",
                entry.name
            )));
        }
        entry.offset = self.payload.len() as u64;
        entry.length = payload.len() as u64;
        entry.crc32 = crc32(payload);
        self.payload.extend_from_slice(payload);
        self.entries.push(entry);
        Ok(())
    }

    /// Serializes the whole container.
    pub fn finish(self) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(&(self.metadata.len() as u32).to_le_bytes());
        for (k, v) in &self.metadata {
            h.extend_from_slice(&(k.len() as u16).to_le_bytes());
            h.extend_from_slice(k.as_bytes());
            h.extend_from_slice(&(v.len() as u32).to_le_bytes());
            h.extend_from_slice(v.as_bytes());
        }
        h.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            h.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            h.extend_from_slice(e.name.as_bytes());
            h.push(e.dtype as u8);
            h.push(e.shape.len() as u8);
            for d in &e.shape {
                h.extend_from_slice(&d.to_le_bytes());
            }
            h.push(e.method as u8);
            h.push(e.dq_flag as u8);
            h.extend_from_slice(&e.num_gtx_flags.to_le_bytes());
            h.extend_from_slice(&e.qp.to_le_bytes());
            h.push(e.qp_density);
            h.extend_from_slice(&e.lambda.to_le_bytes());
            h.extend_from_slice(&e.offset.to_le_bytes());
            h.extend_from_slice(&e.length.to_le_bytes());
            h.extend_from_slice(&e.crc32.to_le_bytes());
        }
        let mut out = Vec::with_capacity(PREAMBLE + h.len() + 4 + self.payload.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&MAJOR.to_le_bytes());
        out.extend_from_slice(&MINOR.to_le_bytes());
        out.extend_from_slice(&(h.len() as u64).to_le_bytes());
        out.extend_from_slice(&h);
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&self.payload);
        out
    }
}

/// Bounds-checked little-endian reader over the header.
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
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn str(&mut self, len: usize) -> Result<String> {
        String::from_utf8(self.take(len)?.to_vec())
            .map_err(|_| Error::Corrupt("string is not UTF-8"))
    }
    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
}

/// Bytes a reader needs from the start of a file to parse its header: the fixed preamble first
/// (`PREAMBLE_LEN` bytes), then `header_span(preamble)` bytes in all.
pub const PREAMBLE_LEN: usize = PREAMBLE;

/// Total length of preamble + header + header checksum, from the first [`PREAMBLE_LEN`] bytes
/// (validates magic, major version and the header-length bound).
pub fn header_span(preamble: &[u8]) -> Result<usize> {
    if preamble.len() < PREAMBLE {
        return Err(Error::Truncated);
    }
    if preamble[..8] != MAGIC {
        return Err(Error::Corrupt("not an nncabac file (bad magic)"));
    }
    let major = u16::from_le_bytes([preamble[8], preamble[9]]);
    let minor = u16::from_le_bytes([preamble[10], preamble[11]]);
    if major != MAJOR {
        return Err(Error::Unsupported(format!(
            "format version {major}.{minor} (this reader: {MAJOR}.x)"
        )));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&preamble[12..20]);
    let hlen = u64::from_le_bytes(len);
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
    /// Tensor table, in file order.
    pub entries: Vec<TensorEntry>,
    /// File offset of the payload area (entry offsets are relative to it).
    pub payload_start: u64,
    /// Minor version of the file.
    pub minor: u16,
}

impl Header {
    /// Parses the header from the first `header_span` bytes of a file of `file_len` bytes,
    /// checking that every payload lies inside the file; payload bytes are not needed.
    pub fn parse(head: &[u8], file_len: u64) -> Result<Header> {
        let span = header_span(head)?;
        let hend = span - 4;
        let crc_bytes = head.get(hend..span).ok_or(Error::Truncated)?;
        let crc = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
        if crc32(&head[..hend]) != crc {
            return Err(Error::Corrupt("header checksum mismatch"));
        }
        let area = file_len.checked_sub(span as u64).ok_or(Error::Truncated)?;
        let mut c = Cursor {
            data: &head[PREAMBLE..hend],
            pos: 0,
        };
        let nmeta = c.u32()? as usize;
        if nmeta > c.remaining() / 6 {
            return Err(Error::Corrupt("metadata count exceeds the header"));
        }
        let mut metadata = Vec::with_capacity(nmeta);
        for _ in 0..nmeta {
            let k = c.u16()? as usize;
            let key = c.str(k)?;
            let v = c.u32()? as usize;
            metadata.push((key, c.str(v)?));
        }
        let ntensors = c.u32()? as usize;
        // The smallest entry (empty name, rank 0) is 37 bytes: bounds the table allocation.
        if ntensors > c.remaining() / 37 {
            return Err(Error::Corrupt("tensor count exceeds the header"));
        }
        let mut entries = Vec::with_capacity(ntensors);
        for _ in 0..ntensors {
            let n = c.u16()? as usize;
            let name = c.str(n)?;
            let dtype = DType::from_code(c.u8()?)?;
            let ndim = c.u8()? as usize;
            if ndim > MAX_DIMS {
                return Err(Error::Corrupt("too many dimensions"));
            }
            let shape = (0..ndim).map(|_| c.u64()).collect::<Result<Vec<_>>>()?;
            let method = Method::from_code(c.u8()?)?;
            let dq = c.u8()?;
            let e = TensorEntry {
                name,
                dtype,
                shape,
                method,
                dq_flag: dq == 1,
                num_gtx_flags: c.u16()?,
                qp: c.u32()? as i32,
                qp_density: c.u8()?,
                lambda: f32::from_bits(c.u32()?),
                offset: c.u64()?,
                length: c.u64()?,
                crc32: c.u32()?,
            };
            if dq > 1 {
                return Err(Error::Corrupt("dq_flag must be 0 or 1"));
            }
            validate_entry(&e, area)?;
            entries.push(e);
        }
        if c.remaining() != 0 {
            return Err(Error::Corrupt("trailing bytes in the header"));
        }
        check_table(&entries)?;
        let minor = u16::from_le_bytes([head[10], head[11]]);
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
        let payload = &data[header.payload_start as usize..];
        Ok(Container { header, payload })
    }

    /// The parsed header.
    pub fn header(&self) -> &Header {
        &self.header
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
        let bytes = self
            .payload
            .get(entry.offset as usize..end as usize)
            .ok_or(Error::Truncated)?;
        verify_payload(entry, bytes)?;
        Ok(bytes)
    }
}

fn validate_entry(e: &TensorEntry, area: u64) -> Result<()> {
    let n = e.num_elements()?;
    let end = e
        .offset
        .checked_add(e.length)
        .ok_or(Error::Corrupt("payload offset overflows"))?;
    if end > area {
        return Err(Error::Truncated);
    }
    if e.method == Method::Raw {
        if n.checked_mul(e.dtype.size()) != Some(e.length) {
            return Err(Error::Corrupt(
                "raw payload length does not match the shape",
            ));
        }
    } else {
        if e.num_gtx_flags == 0 {
            return Err(Error::Corrupt("num_gtx_flags is 0"));
        }
        // A CABAC bin costs at least 1/128 bit: more elements than this cannot be in the payload.
        if n > e.length.saturating_add(4).saturating_mul(1024) {
            return Err(Error::Corrupt(
                "element count impossible for the payload length",
            ));
        }
        if e.shape.len() > 1 && e.shape[1..].contains(&0) {
            return Err(Error::Corrupt(
                "zero in a non-leading dimension of a coded tensor",
            ));
        }
    }
    Ok(())
}

fn check_table(entries: &[TensorEntry]) -> Result<()> {
    let mut spans: Vec<(u64, u64)> = entries
        .iter()
        .filter(|e| e.length > 0)
        .map(|e| (e.offset, e.length))
        .collect();
    spans.sort_unstable();
    if spans.windows(2).any(|w| w[0].0 + w[0].1 > w[1].0) {
        return Err(Error::Corrupt("payloads overlap"));
    }
    let mut names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(Error::Corrupt("duplicate tensor name"));
    }
    Ok(())
}

#[cfg(test)]
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
            lambda: 0.0,
            offset: 0,
            length: 0,
            crc32: 0,
        }
    }

    fn sample() -> Vec<u8> {
        let mut w = ContainerWriter::new();
        w.add_metadata("framework", "pt").unwrap();
        w.add_tensor(
            entry("a", Method::Raw, vec![2]),
            &[0, 0, 128, 63, 0, 0, 0, 64],
        )
        .unwrap();
        w.add_tensor(entry("b", Method::Uniform, vec![3, 1]), &[1, 2, 3, 4])
            .unwrap();
        w.finish()
    }

    #[test]
    fn crc_matches_zlib() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        let c = Container::parse(&bytes).unwrap();
        assert_eq!(c.metadata(), &[("framework".to_string(), "pt".to_string())]);
        assert_eq!(c.entries().len(), 2);
        let b = c.entry("b").unwrap();
        assert_eq!(b.shape, vec![3, 1]);
        assert_eq!(c.payload(b).unwrap(), &[1, 2, 3, 4]);
        assert_eq!(c.payload(c.entry("a").unwrap()).unwrap().len(), 8);
        assert!(c.entry("zz").is_err());
    }

    #[test]
    fn smallest_entries_parse() {
        // A table of minimal entries (empty name, rank 0) fills the header exactly: the
        // allocation bound must not refuse it.
        for n in 1..4 {
            let mut w = ContainerWriter::new();
            for i in 0..n {
                let name = if i == 0 { String::new() } else { i.to_string() };
                w.add_tensor(entry(&name, Method::Raw, vec![]), &[0; 4])
                    .unwrap();
            }
            let bytes = w.finish();
            assert_eq!(Container::parse(&bytes).unwrap().entries().len(), n);
        }
    }

    #[test]
    fn every_truncation_and_bit_flip_is_caught() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            let r = Container::parse(&bytes[..cut]).and_then(|c| {
                c.entries()
                    .iter()
                    .try_for_each(|e| c.payload(e).map(|_| ()))
            });
            assert!(r.is_err(), "truncation at {cut} not detected");
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                let r = Container::parse(&b).and_then(|c| {
                    c.entries()
                        .iter()
                        .try_for_each(|e| c.payload(e).map(|_| ()))
                });
                assert!(r.is_err(), "flip of byte {i} bit {bit} not detected");
            }
        }
    }

    #[test]
    fn header_parses_from_the_head_alone() {
        let bytes = sample();
        let span = header_span(&bytes[..PREAMBLE_LEN]).unwrap();
        let h = Header::parse(&bytes[..span], bytes.len() as u64).unwrap();
        let b = h.entry("b").unwrap();
        let start = (h.payload_start + b.offset) as usize;
        verify_payload(b, &bytes[start..start + b.length as usize]).unwrap();
        assert!(verify_payload(b, &bytes[start..start + 3]).is_err());
        // A file shorter than its table says is refused before any payload is read.
        assert_eq!(
            Header::parse(&bytes[..span], bytes.len() as u64 - 1),
            Err(Error::Truncated)
        );
        let mut newer = bytes.clone();
        newer[8] = 2;
        assert!(matches!(header_span(&newer), Err(Error::Unsupported(_))));
        let mut huge = bytes.clone();
        huge[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(header_span(&huge), Err(Error::Corrupt(_))));
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
    }
}
