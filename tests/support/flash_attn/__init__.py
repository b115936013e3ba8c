"""Stand-in for the CUDA-only flash_attn package, for the CPU end-to-end test (tests/support/openrlhf_cpu.py).

OpenRLHF 0.11.2 imports it at module load (openrlhf/models/ring_attn_utils.py:3-4) and uses it only for
ring attention and packed samples, which the test does not enable; calling anything here is an error.
"""
