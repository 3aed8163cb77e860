"""nncabac: DeepCABAC / MPEG NNC (ISO/IEC 15938-17) neural-network weight codec.

The entropy coder is a Rust crate, bit-exact with the NNC reference (NNCodec 2.1.3);
:mod:`nncabac.nnc` exposes it at the conformance level.
"""

from . import nnc
from ._nncabac import DecodeError, NncabacError, ParameterError, RangeError, __version__

__all__ = [
    "DecodeError",
    "NncabacError",
    "ParameterError",
    "RangeError",
    "__version__",
    "nnc",
]
