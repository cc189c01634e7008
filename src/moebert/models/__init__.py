"""What a student is made of: the MoEBERT model classes, the MoE and MPOE feed-forward layers that take the
place of BERT's FFN, the routers, and the MPO decomposition."""
