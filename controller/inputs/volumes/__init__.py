"""Volume sources for real-time fMRI: a scanner's export folder or an LSL stream of volumes."""
