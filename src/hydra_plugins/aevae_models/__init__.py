"""aevae's Hydra plugins: the model kinds' schemas, found when a config selects them."""
