//! SSH client checks through the system OpenSSH client: key generation, run-as-user, distinct auth/refused errors.
