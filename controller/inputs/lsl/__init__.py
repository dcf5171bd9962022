"""LSL sample streams: finding, checking and reading them."""
