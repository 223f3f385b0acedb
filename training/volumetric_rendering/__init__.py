"""Volume rendering for tri-plane generators: ray sampling, ray marching and importance sampling."""
