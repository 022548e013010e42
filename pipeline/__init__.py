"""Everything up to and including the feature store: dataset adapters, media decoding, face
cropping, frozen backbones, the Dask extraction run and the store itself.

Importable without :mod:`heads`.
"""

__version__ = "0.1.0"
