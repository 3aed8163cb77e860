"""Type stubs of the compiled extension module (built from rust/nncabac-py)."""

from typing import Any

import numpy as np
import numpy.typing as npt

__version__: str

class NncabacError(ValueError): ...
class DecodeError(NncabacError): ...
class ParameterError(NncabacError): ...
class RangeError(NncabacError): ...

class Encoder:
    def __init__(self) -> None: ...
    def encode_signed(self, bits: int, value: int) -> None: ...
    def encode_unsigned(self, bits: int, value: int) -> None: ...
    def encode_layer(
        self,
        levels: npt.NDArray[np.int32],
        *,
        dq_flag: int,
        num_gtx_flags: int,
        param_opt_flag: int,
        general_profile_idc: int,
        parent_node_id_present_flag: int,
        scan_order: int = 0,
    ) -> None: ...
    @property
    def bins_coded(self) -> int: ...
    def finish(self) -> bytes: ...

class Decoder:
    def __init__(self, data: bytes) -> None: ...
    def decode_signed(self, bits: int) -> int: ...
    def decode_unsigned(self, bits: int) -> int: ...
    def decode_layer(
        self,
        shape: list[int],
        *,
        dq_flag: int,
        num_gtx_flags: int,
        general_profile_idc: int,
        parent_node_id_present_flag: int,
        scan_order: int = 0,
    ) -> npt.NDArray[np.int32]: ...
    @property
    def position(self) -> int: ...
    def finish(self) -> int: ...

PREAMBLE_LEN: int
MAX_GTX_FLAGS: int

def quantize_layer(
    weights: npt.NDArray[np.float32],
    *,
    dq_flag: int,
    qp: int,
    qp_density: int,
    lambda_scale: float,
    max_num_no_rem: int,
    general_profile_idc: int,
    scan_order: int = 0,
    importance: npt.NDArray[np.float32] | None = None,
) -> tuple[npt.NDArray[np.int32], int]: ...
def dequantize_layer(
    levels: npt.NDArray[np.int32], *, qp: int, qp_density: int
) -> npt.NDArray[np.float32]: ...
def step_size(qp: int, qp_density: int) -> float: ...
def choose_num_gtx_flags(levels: npt.NDArray[np.int32], *, dq_flag: int) -> int: ...
def header_span(preamble: bytes) -> int: ...
def write_container(
    metadata: list[tuple[str, str]], tensors: list[tuple[dict[str, Any], bytes]]
) -> bytes: ...
def container_size(
    metadata: list[tuple[str, str]], tensors: list[tuple[dict[str, Any], bytes]]
) -> int: ...
def container_prefix(
    metadata: list[tuple[str, str]], tensors: list[tuple[dict[str, Any], bytes]]
) -> bytes: ...
def decode_container(
    data: bytes, *, threads: int | None = None
) -> tuple[list[tuple[str, str]], list[tuple[str, str, npt.NDArray[Any]]]]: ...
def decode_entries(
    items: list[tuple[dict[str, Any], bytes]], *, threads: int | None = None
) -> list[npt.NDArray[Any]]: ...

class Header:
    def __init__(self, head: bytes, file_len: int) -> None: ...
    def metadata(self) -> list[tuple[str, str]]: ...
    def entries(self) -> list[dict[str, Any]]: ...
    @property
    def payload_start(self) -> int: ...
    @property
    def minor_version(self) -> int: ...
    def verify(self, name: str, payload: bytes) -> None: ...

def code_layers(
    jobs: list[
        tuple[
            npt.NDArray[np.float32],
            list[int],
            npt.NDArray[np.float32] | None,
            int,
            int,
            int,
            float,
        ]
    ],
    *,
    num_gtx_flags: int = 11,
    choose_num_gtx_flags: bool = False,
    threads: int | None = None,
) -> list[tuple[bytes, int, int]]: ...
def decode_layers(
    jobs: list[tuple[bytes, list[int], int, int, int | None, int]],
    *,
    threads: int | None = None,
) -> list[npt.NDArray[Any]]: ...
