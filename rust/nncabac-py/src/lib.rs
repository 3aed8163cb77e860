//! Python bindings of `nncabac`: argument conversion, error mapping and GIL release only.
//! All codec logic lives in the `nncabac` crate.

use std::borrow::Cow;

use nncabac::{Error, LayerParams};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use nncabac::container::{self, Container, ContainerWriter, DType, Elements, Method, TensorEntry};

create_exception!(
    _nncabac,
    NncabacError,
    PyValueError,
    "Base class of every nncabac error."
);
create_exception!(
    _nncabac,
    DecodeError,
    NncabacError,
    "A stream is truncated, corrupt or uses an unsupported feature."
);
create_exception!(
    _nncabac,
    ParameterError,
    NncabacError,
    "A coding parameter is invalid."
);
create_exception!(
    _nncabac,
    RangeError,
    NncabacError,
    "A value does not fit the range the format can code."
);

fn to_py(err: Error) -> PyErr {
    let msg = err.to_string();
    match err {
        Error::Truncated | Error::Corrupt(_) => DecodeError::new_err(msg),
        Error::InvalidParameter(_) => ParameterError::new_err(msg),
        Error::Overflow(_) => RangeError::new_err(msg),
        Error::Unsupported(_) => DecodeError::new_err(msg),
        _ => NncabacError::new_err(msg),
    }
}

fn finished() -> PyErr {
    ParameterError::new_err("this coder has already been finished")
}

fn layer_params(
    dq_flag: u8,
    num_gtx_flags: u32,
    general_profile_idc: u8,
    parent_node_id_present_flag: u8,
    scan_order: u32,
) -> PyResult<LayerParams> {
    if dq_flag > 1 || parent_node_id_present_flag > 1 {
        return Err(ParameterError::new_err(
            "dq_flag and parent_node_id_present_flag must be 0 or 1",
        ));
    }
    let p = LayerParams {
        dq_flag: dq_flag == 1,
        num_gtx_flags,
        general_profile_idc,
        parent_node_id_present_flag: parent_node_id_present_flag == 1,
        scan_order,
    };
    p.validate().map_err(to_py)?;
    Ok(p)
}

/// Writes one arithmetic-coded stream of fields and layers.
#[pyclass(module = "nncabac._nncabac")]
struct Encoder {
    inner: Option<nncabac::Encoder>,
}

impl Encoder {
    fn inner(&mut self) -> PyResult<&mut nncabac::Encoder> {
        self.inner.as_mut().ok_or_else(finished)
    }
}

#[pymethods]
impl Encoder {
    #[new]
    fn new() -> Self {
        Encoder {
            inner: Some(nncabac::Encoder::new()),
        }
    }

    fn encode_signed(&mut self, bits: u32, value: i64) -> PyResult<()> {
        self.inner()?.encode_signed(bits, value).map_err(to_py)
    }

    fn encode_unsigned(&mut self, bits: u32, value: u64) -> PyResult<()> {
        self.inner()?.encode_unsigned(bits, value).map_err(to_py)
    }

    /// `levels` must be a C-contiguous int32 array (the Python wrapper converts); it is read in
    /// place with the GIL released, so it must not be modified concurrently.
    #[pyo3(signature = (levels, *, dq_flag, num_gtx_flags, param_opt_flag, general_profile_idc, parent_node_id_present_flag, scan_order=0))]
    #[allow(clippy::too_many_arguments)]
    fn encode_layer(
        &mut self,
        py: Python<'_>,
        levels: PyReadonlyArrayDyn<'_, i32>,
        dq_flag: u8,
        num_gtx_flags: u32,
        param_opt_flag: u8,
        general_profile_idc: u8,
        parent_node_id_present_flag: u8,
        scan_order: u32,
    ) -> PyResult<()> {
        if param_opt_flag > 1 {
            return Err(ParameterError::new_err("param_opt_flag must be 0 or 1"));
        }
        let params = layer_params(
            dq_flag,
            num_gtx_flags,
            general_profile_idc,
            parent_node_id_present_flag,
            scan_order,
        )?;
        let shape = levels.shape().to_vec();
        let slice = levels
            .as_slice()
            .map_err(|_| ParameterError::new_err("levels must be C-contiguous"))?;
        let enc = self.inner()?;
        py.detach(|| enc.encode_layer(slice, &shape, &params, param_opt_flag == 1))
            .map_err(to_py)
    }

    /// Number of bins coded so far.
    #[getter]
    fn bins_coded(&mut self) -> PyResult<u64> {
        Ok(self.inner()?.bins_coded())
    }

    fn finish<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let enc = self.inner.take().ok_or_else(finished)?;
        let bytes = py.detach(|| enc.finish());
        Ok(PyBytes::new(py, &bytes))
    }
}

/// Reads a stream; the caller repeats the encoder's sequence of calls.
#[pyclass(module = "nncabac._nncabac")]
struct Decoder {
    inner: Option<nncabac::Decoder<Vec<u8>>>,
}

impl Decoder {
    fn inner(&mut self) -> PyResult<&mut nncabac::Decoder<Vec<u8>>> {
        self.inner.as_mut().ok_or_else(finished)
    }
}

#[pymethods]
impl Decoder {
    #[new]
    fn new(data: Vec<u8>) -> PyResult<Self> {
        Ok(Decoder {
            inner: Some(nncabac::Decoder::new(data).map_err(to_py)?),
        })
    }

    fn decode_signed(&mut self, bits: u32) -> PyResult<i64> {
        self.inner()?.decode_signed(bits).map_err(to_py)
    }

    fn decode_unsigned(&mut self, bits: u32) -> PyResult<u64> {
        self.inner()?.decode_unsigned(bits).map_err(to_py)
    }

    /// Returns the levels as a flat int32 array; the Python wrapper reshapes it.
    #[pyo3(signature = (shape, *, dq_flag, num_gtx_flags, general_profile_idc, parent_node_id_present_flag, scan_order=0))]
    #[allow(clippy::too_many_arguments)]
    fn decode_layer<'py>(
        &mut self,
        py: Python<'py>,
        shape: Vec<usize>,
        dq_flag: u8,
        num_gtx_flags: u32,
        general_profile_idc: u8,
        parent_node_id_present_flag: u8,
        scan_order: u32,
    ) -> PyResult<Bound<'py, PyArray1<i32>>> {
        let params = layer_params(
            dq_flag,
            num_gtx_flags,
            general_profile_idc,
            parent_node_id_present_flag,
            scan_order,
        )?;
        let dec = self.inner()?;
        let levels = py
            .detach(|| dec.decode_layer(&shape, &params))
            .map_err(to_py)?;
        Ok(PyArray1::from_vec(py, levels))
    }

    /// Bytes read so far.
    #[getter]
    fn position(&mut self) -> PyResult<usize> {
        Ok(self.inner()?.position())
    }

    fn finish(&mut self) -> PyResult<usize> {
        self.inner
            .take()
            .ok_or_else(finished)?
            .finish()
            .map_err(to_py)
    }
}

/// `quantLayer`: levels (reconstruction indices when `dq_flag`) as a flat int32 array, and the
/// qp used (differs from `qp` after the overflow fallback). GIL released.
#[pyfunction]
#[pyo3(signature = (weights, *, dq_flag, qp, qp_density, lambda_scale, max_num_no_rem, general_profile_idc, scan_order=0, importance=None))]
#[allow(clippy::too_many_arguments)]
fn quantize_layer<'py>(
    py: Python<'py>,
    weights: PyReadonlyArrayDyn<'py, f32>,
    dq_flag: u8,
    qp: i32,
    qp_density: u32,
    lambda_scale: f32,
    max_num_no_rem: u32,
    general_profile_idc: u8,
    scan_order: u32,
    importance: Option<PyReadonlyArrayDyn<'py, f32>>,
) -> PyResult<(Bound<'py, PyArray1<i32>>, i32)> {
    if dq_flag > 1 {
        return Err(ParameterError::new_err("dq_flag must be 0 or 1"));
    }
    let params = nncabac::QuantParams {
        dq_flag: dq_flag == 1,
        qp,
        qp_density,
        lambda_scale,
        max_num_no_rem,
        general_profile_idc,
        scan_order,
    };
    let contiguous = || ParameterError::new_err("arrays must be C-contiguous float32");
    let w = weights.as_slice().map_err(|_| contiguous())?;
    let imp = match &importance {
        Some(a) => Some(a.as_slice().map_err(|_| contiguous())?),
        None => None,
    };
    let (levels, qp_used) = py
        .detach(|| nncabac::quantize_layer(w, &params, imp))
        .map_err(to_py)?;
    Ok((PyArray1::from_vec(py, levels), qp_used))
}

/// `dequantLayer`: `float32(Δ × float32(level))` as a flat float32 array. GIL released.
#[pyfunction]
#[pyo3(signature = (levels, *, qp, qp_density))]
fn dequantize_layer<'py>(
    py: Python<'py>,
    levels: PyReadonlyArrayDyn<'py, i32>,
    qp: i32,
    qp_density: u32,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let l = levels
        .as_slice()
        .map_err(|_| ParameterError::new_err("levels must be C-contiguous int32"))?;
    let out = py
        .detach(|| nncabac::dequantize_layer(l, qp, qp_density))
        .map_err(to_py)?;
    Ok(PyArray1::from_vec(py, out))
}

type Job<'py> = (
    PyReadonlyArrayDyn<'py, f32>,
    Vec<usize>,
    Option<PyReadonlyArrayDyn<'py, f32>>,
    u8,
    i32,
    u32,
    f32,
);

/// Quantizes and codes many tensors on all cores with the GIL released. Each job is
/// `(weights, shape, importance, dq_flag, qp, qp_density, lambda_scale)`; returns
/// `(stream, qp_used, num_gtx_flags_used)` per job, in order (G = `num_gtx_flags`, or chosen
/// per tensor with `choose_num_gtx_flags`; rate model `num_gtx_flags` − 1; param_opt 1).
#[pyfunction]
#[pyo3(signature = (jobs, *, num_gtx_flags=11, choose_num_gtx_flags=false, threads=None))]
fn code_layers<'py>(
    py: Python<'py>,
    jobs: Vec<Job<'py>>,
    num_gtx_flags: u32,
    choose_num_gtx_flags: bool,
    threads: Option<usize>,
) -> PyResult<Vec<(Bound<'py, PyBytes>, i32, u32)>> {
    if num_gtx_flags == 0 {
        return Err(ParameterError::new_err("num_gtx_flags must be at least 1"));
    }
    let contiguous = || ParameterError::new_err("arrays must be C-contiguous float32");
    let mut specs = Vec::with_capacity(jobs.len());
    for (w, shape, imp, dq, qp, qp_density, lambda_scale) in &jobs {
        if *dq > 1 {
            return Err(ParameterError::new_err("dq_flag must be 0 or 1"));
        }
        let imp = match imp {
            Some(a) => Some(a.as_slice().map_err(|_| contiguous())?),
            None => None,
        };
        let quant = nncabac::QuantParams {
            dq_flag: *dq == 1,
            qp: *qp,
            qp_density: *qp_density,
            lambda_scale: *lambda_scale,
            max_num_no_rem: num_gtx_flags - 1,
            general_profile_idc: 0,
            scan_order: 0,
        };
        specs.push((
            w.as_slice().map_err(|_| contiguous())?,
            shape.as_slice(),
            imp,
            quant,
        ));
    }
    let out = py.detach(|| {
        let jobs: Vec<nncabac::batch::LayerJob> = specs
            .iter()
            .map(|(w, shape, imp, quant)| nncabac::batch::LayerJob {
                weights: w,
                shape,
                quant: *quant,
                importance: *imp,
                num_gtx_flags,
                choose_num_gtx_flags,
                param_opt_flag: true,
            })
            .collect();
        nncabac::batch::code_layers(&jobs, threads)
    });
    out.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let coded = r.map_err(|e| {
                let err = to_py(e);
                let msg = format!("job {i}: {}", err.value(py));
                match () {
                    _ if err.is_instance_of::<DecodeError>(py) => DecodeError::new_err(msg),
                    _ if err.is_instance_of::<RangeError>(py) => RangeError::new_err(msg),
                    _ => ParameterError::new_err(msg),
                }
            })?;
            Ok((
                PyBytes::new(py, &coded.stream),
                coded.qp,
                coded.num_gtx_flags,
            ))
        })
        .collect()
}

type DecodeSpec<'py> = (Bound<'py, PyBytes>, Vec<usize>, u8, u32, Option<i32>, u32);

/// Decodes many single-layer streams on all cores with the GIL released. Each job is
/// `(stream, shape, dq_flag, num_gtx_flags, qp or None, qp_density)`; returns flat float32
/// arrays (dequantized with qp) or int32 arrays (qp None), in order.
#[pyfunction]
#[pyo3(signature = (jobs, *, threads=None))]
fn decode_layers<'py>(
    py: Python<'py>,
    jobs: Vec<DecodeSpec<'py>>,
    threads: Option<usize>,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let mut specs = Vec::with_capacity(jobs.len());
    for (stream, shape, dq, g, qp, density) in &jobs {
        if *dq > 1 {
            return Err(ParameterError::new_err("dq_flag must be 0 or 1"));
        }
        specs.push((
            stream.as_bytes(),
            shape.as_slice(),
            *dq == 1,
            *g,
            qp.map(|q| (q, *density)),
        ));
    }
    let out = py.detach(|| {
        let jobs: Vec<nncabac::batch::DecodeJob> = specs
            .iter()
            .map(|(stream, shape, dq, g, deq)| nncabac::batch::DecodeJob {
                stream,
                shape,
                dq_flag: *dq,
                num_gtx_flags: *g,
                dequantize: *deq,
            })
            .collect();
        nncabac::batch::decode_layers(&jobs, threads)
    });
    out.into_iter()
        .map(|r| match r.map_err(to_py)? {
            nncabac::batch::Decoded::Levels(v) => Ok(PyArray1::from_vec(py, v).into_any()),
            nncabac::batch::Decoded::Weights(v) => Ok(PyArray1::from_vec(py, v).into_any()),
        })
        .collect()
}

/// The number of greater-than flags that codes `levels` smallest (see `nncabac::gtx`).
/// GIL released.
#[pyfunction]
#[pyo3(signature = (levels, *, dq_flag))]
fn choose_num_gtx_flags(levels: PyReadonlyArrayDyn<'_, i32>, dq_flag: u8) -> PyResult<u32> {
    if dq_flag > 1 {
        return Err(ParameterError::new_err("dq_flag must be 0 or 1"));
    }
    let l = levels
        .as_slice()
        .map_err(|_| ParameterError::new_err("levels must be C-contiguous int32"))?;
    Ok(levels
        .py()
        .detach(|| nncabac::gtx::choose_num_gtx_flags(l, dq_flag == 1)))
}

/// The NNC step size Δ of `qp` at `qp_density`.
#[pyfunction]
fn step_size(qp: i32, qp_density: u32) -> PyResult<f32> {
    nncabac::step_size(qp, qp_density).map_err(to_py)
}

fn entry_to_dict<'py>(py: Python<'py>, e: &TensorEntry) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", &e.name)?;
    d.set_item("dtype", e.dtype.name())?;
    d.set_item("shape", pyo3::types::PyTuple::new(py, &e.shape)?)?;
    d.set_item("method", e.method.name())?;
    d.set_item("dq_flag", e.dq_flag as u8)?;
    d.set_item("num_gtx_flags", e.num_gtx_flags)?;
    d.set_item("qp", e.qp)?;
    d.set_item("qp_density", e.qp_density)?;
    d.set_item("lambda_", e.lambda)?;
    d.set_item("offset", e.offset)?;
    d.set_item("length", e.length)?;
    d.set_item("crc32", e.crc32)?;
    Ok(d)
}

fn item<'py, T: for<'a> FromPyObject<'a, 'py>>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<T>
where
    for<'a> <T as FromPyObject<'a, 'py>>::Error: Into<PyErr>,
{
    d.get_item(key)?
        .ok_or_else(|| ParameterError::new_err(format!("tensor entry lacks {key:?}")))?
        .extract::<T>()
        .map_err(Into::into)
}

/// The parsed header of a container file.
#[pyclass(module = "nncabac._nncabac", frozen)]
struct Header {
    inner: container::Header,
}

#[pymethods]
impl Header {
    /// Parses `head` (at least `header_span` bytes of a file of `file_len` bytes).
    #[new]
    fn new(py: Python<'_>, head: Cow<'_, [u8]>, file_len: u64) -> PyResult<Self> {
        let inner = py
            .detach(|| container::Header::parse(&head, file_len))
            .map_err(to_py)?;
        Ok(Header { inner })
    }

    /// Free-form metadata as a list of (key, value) pairs, in file order.
    fn metadata(&self) -> Vec<(String, String)> {
        self.inner.metadata.clone()
    }

    /// The tensor table as a list of dicts, in file order.
    fn entries<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.inner
            .entries
            .iter()
            .map(|e| entry_to_dict(py, e))
            .collect()
    }

    /// File offset of the payload area.
    #[getter]
    fn payload_start(&self) -> u64 {
        self.inner.payload_start
    }

    #[getter]
    fn minor_version(&self) -> u16 {
        self.inner.minor
    }

    /// Checks the payload bytes read for tensor `name` (length and CRC32).
    fn verify(&self, name: &str, payload: &[u8]) -> PyResult<()> {
        let e = self.inner.entry(name).map_err(to_py)?;
        container::verify_payload(e, payload).map_err(to_py)
    }
}

/// Length of preamble + header + header checksum, from the first `PREAMBLE_LEN` bytes.
#[pyfunction]
fn header_span(preamble: &[u8]) -> PyResult<usize> {
    container::header_span(preamble).map_err(to_py)
}

/// A container entry from its dict (`offset`, `length` and `crc32` are not read).
fn entry_from_dict(d: &Bound<'_, PyDict>) -> PyResult<TensorEntry> {
    let dtype: String = item(d, "dtype")?;
    let method: String = item(d, "method")?;
    Ok(TensorEntry {
        name: item(d, "name")?,
        dtype: DType::from_name(&dtype).map_err(to_py)?,
        shape: item(d, "shape")?,
        method: Method::from_name(&method).map_err(to_py)?,
        dq_flag: item::<u8>(d, "dq_flag")? == 1,
        num_gtx_flags: item(d, "num_gtx_flags")?,
        qp: item(d, "qp")?,
        qp_density: item(d, "qp_density")?,
        lambda: item(d, "lambda_")?,
        offset: 0,
        length: 0,
        crc32: 0,
    })
}

/// `w` with the metadata pairs and the (entry dict, payload) pairs added.
fn filled(
    mut w: ContainerWriter,
    metadata: &[(String, String)],
    tensors: &[(Bound<'_, PyDict>, Bound<'_, PyAny>)],
) -> PyResult<ContainerWriter> {
    for (k, v) in metadata {
        w.add_metadata(k, v).map_err(to_py)?;
    }
    for (d, payload) in tensors {
        let payload: Cow<'_, [u8]> = payload.extract()?;
        w.add_tensor(entry_from_dict(d)?, &payload).map_err(to_py)?;
    }
    Ok(w)
}

/// Serializes a container from metadata pairs and (entry dict, payload) pairs.
#[pyfunction]
fn write_container<'py>(
    py: Python<'py>,
    metadata: Vec<(String, String)>,
    tensors: Vec<(Bound<'py, PyDict>, Bound<'py, PyAny>)>,
) -> PyResult<Bound<'py, PyBytes>> {
    let w = filled(ContainerWriter::new(), &metadata, &tensors)?;
    let bytes = py.detach(|| w.finish()).map_err(to_py)?;
    Ok(PyBytes::new(py, &bytes))
}

/// The size of the file `write_container` would write for the same arguments, without
/// building it (rate control probes sizes without a second copy of the payloads).
#[pyfunction]
fn container_size<'py>(
    metadata: Vec<(String, String)>,
    tensors: Vec<(Bound<'py, PyDict>, Bound<'py, PyAny>)>,
) -> PyResult<u64> {
    let w = filled(ContainerWriter::measuring(), &metadata, &tensors)?;
    w.finished_len().map_err(to_py)
}

/// What the file `write_container` would write holds before the payloads (preamble, header,
/// header checksum): a caller writes this and then the payloads it holds, in order, so the
/// file is never assembled in memory.
#[pyfunction]
fn container_prefix<'py>(
    py: Python<'py>,
    metadata: Vec<(String, String)>,
    tensors: Vec<(Bound<'py, PyDict>, Bound<'py, PyAny>)>,
) -> PyResult<Bound<'py, PyBytes>> {
    let w = filled(ContainerWriter::measuring(), &metadata, &tensors)?;
    let prefix = w.prefix().map_err(to_py)?;
    Ok(PyBytes::new(py, &prefix))
}

/// `err` with the tensor's name in front of its message, same exception type.
fn for_tensor(err: Error, name: &str) -> PyErr {
    let msg = format!("tensor {name:?}: {err}");
    match err {
        Error::Truncated | Error::Corrupt(_) | Error::Unsupported(_) => DecodeError::new_err(msg),
        Error::InvalidParameter(_) => ParameterError::new_err(msg),
        Error::Overflow(_) => RangeError::new_err(msg),
        _ => NncabacError::new_err(msg),
    }
}

/// A decoded tensor as a numpy array of `shape`, owning the Rust buffer (no copy).
fn to_numpy<'py>(py: Python<'py>, el: Elements, shape: &[u64]) -> PyResult<Bound<'py, PyAny>> {
    let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    macro_rules! array {
        ($v:expr) => {
            PyArray1::from_vec(py, $v).reshape(dims)?.into_any()
        };
    }
    Ok(match el {
        Elements::F32(v) => array!(v),
        Elements::F64(v) => array!(v),
        Elements::I8(v) => array!(v),
        Elements::I16(v) => array!(v),
        Elements::I32(v) => array!(v),
        Elements::I64(v) => array!(v),
        Elements::U8(v) => array!(v),
        Elements::U16(v) => array!(v),
        Elements::U32(v) => array!(v),
        Elements::U64(v) => array!(v),
        Elements::Bool(v) => array!(v),
    })
}

type Decoded<'py> = (
    Vec<(String, String)>,
    Vec<(String, &'static str, Bound<'py, PyAny>)>,
);

/// Parses, verifies and decodes a whole container file held in `data`, every tensor in
/// parallel with the GIL released. Returns the metadata pairs and `(name, dtype, array)` per
/// tensor in file order; arrays as `TensorEntry::decode` gives them (quantized: float32; raw
/// float16/bfloat16: uint16 bit patterns; others: the original dtype), already shaped.
#[pyfunction]
#[pyo3(signature = (data, *, threads=None))]
fn decode_container<'py>(
    py: Python<'py>,
    data: Cow<'_, [u8]>,
    threads: Option<usize>,
) -> PyResult<Decoded<'py>> {
    let (header, decoded) = py
        .detach(|| {
            Container::parse(&data).map(|c| {
                let decoded = c.decode_all(threads);
                (c.into_header(), decoded)
            })
        })
        .map_err(to_py)?;
    let mut out = Vec::with_capacity(header.entries.len());
    for (e, r) in header.entries.into_iter().zip(decoded) {
        let array = to_numpy(py, r.map_err(|err| for_tensor(err, &e.name))?, &e.shape)?;
        out.push((e.name, e.dtype.name(), array));
    }
    Ok((header.metadata, out))
}

/// Decodes (entry dict, payload) pairs whose payloads are already verified, in parallel with
/// the GIL released; arrays as in `decode_container`, in order.
#[pyfunction]
#[pyo3(signature = (items, *, threads=None))]
fn decode_entries<'py>(
    py: Python<'py>,
    items: Vec<(Bound<'py, PyDict>, Bound<'py, PyAny>)>,
    threads: Option<usize>,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let mut entries = Vec::with_capacity(items.len());
    let mut payloads: Vec<Cow<'_, [u8]>> = Vec::with_capacity(items.len());
    for (d, p) in &items {
        let payload: Cow<'_, [u8]> = p.extract()?;
        let mut e = entry_from_dict(d)?;
        e.length = payload.len() as u64;
        entries.push(e);
        payloads.push(payload);
    }
    let decoded = py.detach(|| {
        let pairs: Vec<(&TensorEntry, &[u8])> =
            entries.iter().zip(payloads.iter().map(|p| &**p)).collect();
        container::decode_entries(&pairs, threads)
    });
    entries
        .iter()
        .zip(decoded)
        .map(|(e, r)| to_numpy(py, r.map_err(|err| for_tensor(err, &e.name))?, &e.shape))
        .collect()
}

#[pymodule]
fn _nncabac(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Encoder>()?;
    m.add_class::<Decoder>()?;
    m.add_class::<Header>()?;
    m.add_function(wrap_pyfunction!(header_span, m)?)?;
    m.add_function(wrap_pyfunction!(quantize_layer, m)?)?;
    m.add_function(wrap_pyfunction!(dequantize_layer, m)?)?;
    m.add_function(wrap_pyfunction!(step_size, m)?)?;
    m.add_function(wrap_pyfunction!(choose_num_gtx_flags, m)?)?;
    m.add_function(wrap_pyfunction!(code_layers, m)?)?;
    m.add_function(wrap_pyfunction!(decode_layers, m)?)?;
    m.add_function(wrap_pyfunction!(write_container, m)?)?;
    m.add_function(wrap_pyfunction!(container_size, m)?)?;
    m.add_function(wrap_pyfunction!(container_prefix, m)?)?;
    m.add_function(wrap_pyfunction!(decode_container, m)?)?;
    m.add_function(wrap_pyfunction!(decode_entries, m)?)?;
    m.add("PREAMBLE_LEN", container::PREAMBLE_LEN)?;
    m.add("MAX_GTX_FLAGS", nncabac::contexts::MAX_GTX_FLAGS)?;
    m.add("NncabacError", py.get_type::<NncabacError>())?;
    m.add("DecodeError", py.get_type::<DecodeError>())?;
    m.add("ParameterError", py.get_type::<ParameterError>())?;
    m.add("RangeError", py.get_type::<RangeError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
