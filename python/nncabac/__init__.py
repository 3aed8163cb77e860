"""nncabac: DeepCABAC / MPEG NNC (ISO/IEC 15938-17) neural-network weight codec.

The entropy coder and quantizers are a Rust crate, bit-exact with the NNC reference
(NNCodec 2.1.3); :mod:`nncabac.nnc` exposes them at the conformance level.

* one tensor: :func:`encode_tensor` / :func:`decode_tensor`
* whole models: :func:`compress` / :func:`decompress` / :class:`safe_open`,
  :func:`compress_folder` / :func:`restore_folder` for Hugging Face folders
* rate control: :mod:`nncabac.ratecontrol`; policy: :mod:`nncabac.policy`;
  importance (torch): :mod:`nncabac.importance`
* incremental / federated updates against a base: :mod:`nncabac.update`
  (:class:`UpdateCoder`, :func:`decode_update`); Flower: :mod:`nncabac.flower`
"""

from . import nnc, policy, ratecontrol, update
from ._nncabac import DecodeError, NncabacError, ParameterError, RangeError, __version__
from .finetune import FinetuneResult, finetune
from .models import (
    CompressReport,
    compress,
    compress_folder,
    decompress,
    restore_folder,
    safe_open,
)
from .tensor import TensorInfo, decode_tensor, encode_tensor, qp_for_step, step_size, tensor_info
from .update import BaseMismatchError, UpdateCoder, decode_update, encode_update

__all__ = [
    "BaseMismatchError",
    "CompressReport",
    "FinetuneResult",
    "finetune",
    "DecodeError",
    "NncabacError",
    "ParameterError",
    "RangeError",
    "TensorInfo",
    "__version__",
    "compress",
    "compress_folder",
    "decode_tensor",
    "decompress",
    "encode_tensor",
    "nnc",
    "policy",
    "qp_for_step",
    "ratecontrol",
    "restore_folder",
    "safe_open",
    "step_size",
    "tensor_info",
    "update",
    "UpdateCoder",
    "decode_update",
    "encode_update",
]
