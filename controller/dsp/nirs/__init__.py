"""Continuous-wave fNIRS, online: optical density, Beer-Lambert, short-separation regression, signal quality."""
