"""Triton kernels, each with a typed wrapper. Importing a module here imports triton; set
TRITON_INTERPRET=1 before that to run them on CPU (tests do)."""
