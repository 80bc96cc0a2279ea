"""Patient keyrings: each scope key version sealed to each member, signed by its granter."""
