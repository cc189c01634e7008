"""Inference speed: the measurement behind `moebert speed`, and the reference-style MoE forward it is
compared with."""

# The columns of `moebert speed`'s CSV: what it writes and what the speed plots (moebert.reporting.plots)
# require, here where both can import them without the measurement's torch.
COLUMNS = [
    "model",
    "weights",
    "source",
    "device",
    "dtype",
    "threads",
    "seq_len",
    "batch_size",
    "repeats",
    "latency_ms_median",
    "latency_ms_p90",
    "latency_ms_min",
    "latency_ms_max",
    "examples_per_s",
    "params_total",
    "params_effective",
]
