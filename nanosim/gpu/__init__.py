"""Real-GPU half of nanosim: a Qwen3 runner with a paged KV cache.

Nothing here is imported by the rest of the package; import ``nanosim.gpu.runner`` explicitly
(it pulls in torch). Data flow of one step:

    SeqWork list ─► inputs.py (host packing, one H2D copy) ─► qwen3.py (layers, attention/*)
                 ─► sampler.py ─► token ids + duration_s          (runner.py glues it together)
"""
