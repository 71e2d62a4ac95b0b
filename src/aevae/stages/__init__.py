"""One module per DVC stage, each a `run(cfg) -> metrics` over the skeleton in `common`:
validate -> load splits -> open the run -> compute -> write atomically -> log."""
