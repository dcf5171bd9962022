"""The protocol language's neutral base: units, source positions, errors, field types and the compiled protocol's data types.

Shared by the protocol parser, the site file, the feature kinds and the DSP, and importing none of them, so
they can all rely on it without import cycles."""
