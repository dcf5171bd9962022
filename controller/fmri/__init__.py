"""Real-time fMRI processing: realignment, ROIs, GLM detrending, feedback features."""
