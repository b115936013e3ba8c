"""The name openrlhf/models/ring_attn_utils.py:4 imports; unused without ring attention."""

from flash_attn.bert_padding import _unavailable as all_gather  # noqa: F401
