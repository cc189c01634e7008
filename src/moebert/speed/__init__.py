"""Inference speed: the measurement behind `moebert speed`, and the reference-style MoE forward it is
compared with."""
