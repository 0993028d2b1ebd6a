"""Training algorithms: MD-GAN's server and worker loops and the GAN steps they share."""
