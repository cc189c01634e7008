"""MoEBERT: turn a fine-tuned BERT into a Mixture-of-Experts model (Zuo et al., NAACL 2022)."""

__version__ = "0.1.0"
