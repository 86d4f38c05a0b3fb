//! The transport's series through the `metrics` facade, read back from a
//! recorder installed for this test binary.
