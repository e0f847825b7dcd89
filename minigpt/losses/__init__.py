"""Stage losses as pure functions of tensors: no Lightning, no models, each with its equation."""
