//! The Coder control plane: the real Coder server via testcontainers, its API client, and the named test doubles used on the fixture guest.
