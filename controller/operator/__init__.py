"""The operator's control plane: console keys, control channel, E-STOP."""
