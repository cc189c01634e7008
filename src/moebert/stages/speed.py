"""`moebert speed`: latency and throughput of dense, MoE and dense-narrow models over a grid of batch sizes and
lengths. The command's flags and run live beside the timing loop they drive (moebert.speed.measure), which
the benchmarks also import; this module is its entry among the stages."""

from moebert.speed.measure import HELP, add_arguments, run

__all__ = ["HELP", "add_arguments", "run"]
