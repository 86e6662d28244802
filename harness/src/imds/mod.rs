//! Emulated EC2 instance metadata service (IMDSv1/v2), one per instance, plus the guestfwd relay.
