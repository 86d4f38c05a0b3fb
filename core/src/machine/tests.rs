//! Unit tests of the machine.
