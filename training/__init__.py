"""EG3D networks, losses, datasets and the training loop."""
