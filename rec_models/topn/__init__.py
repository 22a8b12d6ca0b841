"""Top-N search by dot product, in blocks, so memory stays bounded whatever the catalogue size.

- :mod:`~rec_models.topn.blocks`: :class:`TopNBlock` (what every search yields), :func:`flatten`, and
  :func:`top_n_scored`, the plain blocked search for any scorer (NeuMF's network);
- :mod:`~rec_models.topn.reference`: the plain blocked top-k by dot product, the answer to match;
- :mod:`~rec_models.topn.pruned`: the same answer with provably useless work skipped (thresholds,
  norm order, seeds, a bfloat16 pre-test with an error bound);
- :mod:`~rec_models.topn.search`: :func:`top_n`, the catalogue search the product calls.
"""

from rec_models.topn.blocks import DEFAULT_BLOCK_BYTES, TopNBlock, flatten, pick_device, top_n_scored
from rec_models.topn.search import top_n

__all__ = ["DEFAULT_BLOCK_BYTES", "TopNBlock", "flatten", "pick_device", "top_n", "top_n_scored"]
