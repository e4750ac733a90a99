"""nanosim: one scheduler and paged-KV block manager, driven by a simulated or a real GPU."""
__version__ = "0.1.0"
