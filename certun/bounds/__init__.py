"""Error bounds behind the certificates (host-side float64 arithmetic).

Each function names its paper and equation and the ``proofs/`` file deriving it:
:mod:`certun.bounds.guo` (Guo et al. 2020 gradient-residual bounds, with the
corrected worst case) and :mod:`certun.bounds.sekhari` (Sekhari et al. 2021
sensitivity with training and solve tolerances).
"""

from certun.bounds import descent_to_delete as descent_to_delete
from certun.bounds import guo as guo
from certun.bounds import sekhari as sekhari
from certun.bounds import zhang as zhang
