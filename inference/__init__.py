"""Tools that use a trained generator: loading it, rendering images, projection, the perceptual loss, shapes."""
