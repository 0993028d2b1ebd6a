"""MD-GAN: one generator on the server (rank 0), one discriminator per worker (ranks 1..N)."""
