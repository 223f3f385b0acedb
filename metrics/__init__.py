"""Quality metrics (FID, KID, precision/recall, Inception score) for generator snapshots."""
