//! Python bindings of `nncabac`: argument conversion, error mapping and GIL release only.
//! All codec logic lives in the `nncabac` crate.

use nncabac::{Error, LayerParams};
use numpy::{PyArray1, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

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

#[pymodule]
fn _nncabac(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Encoder>()?;
    m.add_class::<Decoder>()?;
    m.add("NncabacError", py.get_type::<NncabacError>())?;
    m.add("DecodeError", py.get_type::<DecodeError>())?;
    m.add("ParameterError", py.get_type::<ParameterError>())?;
    m.add("RangeError", py.get_type::<RangeError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
