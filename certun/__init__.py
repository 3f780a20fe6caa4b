"""certun: certified machine unlearning in JAX."""

from certun._version import __version__ as __version__
