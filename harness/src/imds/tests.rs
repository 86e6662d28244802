//! Unit tests of the emulated IMDS against a real bound server (reqwest).
