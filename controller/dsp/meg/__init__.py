"""MEG, online: Neuromag sensor layout (gradiometer pairs, magnetometers), signal-space projection."""
