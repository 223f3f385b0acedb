"""PyTorch utilities: persistence, statistics, distributed helpers and fused ops."""
