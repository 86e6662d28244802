//! Real EC2 backend via aws-sdk-ec2: instances, spot, home volume, tagging and leak-proof cleanup (`harness sweep`).
