"""fastrnn: fused recurrent-network kernels behind the classic NumPy time-layer API.

Import ``fastrnn.layers`` for TimeRNN / TimeLSTM / TimeGRU / ...; the array type picks the
backend (NumPy -> Numba, CuPy -> CUDA), see ``fastrnn.backend``. Importing prints nothing and
does not import cupy or torch.
"""
from .backend import get_backend, set_backend

__version__ = "0.1.0"
__all__ = ["get_backend", "set_backend", "__version__"]
