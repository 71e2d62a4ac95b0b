"""aevae: a reproducible experiment platform for autoencoders and variational autoencoders."""
