"""How a student is built from a fine-tuned teacher: MoEBERT's importance-guided expert adaptation (and its
ablation constructions), the MPOE experts, and the controls (half-depth, dense-narrow, majority)."""
