# Template variables. Each values/*.yml file sets these for one variant;
# `harness lint` checks every values file against this file.

variable "arch" {
  description = "CPU architecture of the workspace instances: x86_64 or aarch64 (Graviton)."
  type        = string
  validation {
    condition     = contains(["x86_64", "aarch64"], var.arch)
    error_message = "arch must be x86_64 or aarch64."
  }
}

variable "is_spot" {
  description = "Run workspaces on persistent spot instances that stop (not terminate) on interruption."
  type        = bool
}

variable "default_instance_type" {
  description = "Default of the instance_type parameter. Must match arch (t3/m6i/... for x86_64, t4g/m7g/... for aarch64) and have at least 2 GiB of memory: evaluating and switching a NixOS configuration runs out of memory on 1 GiB."
  type        = string
}

variable "default_agent_user" {
  description = "Default of the agent_user parameter. The user's flake must define this user."
  type        = string
  default     = "coder"
  validation {
    condition     = can(regex("^[a-z_][a-z0-9_-]{0,31}$", var.default_agent_user))
    error_message = "default_agent_user must be a Linux user name: ^[a-z_][a-z0-9_-]{0,31}$."
  }
}

variable "default_flake_uri" {
  description = "Default of the flake_uri parameter (empty: the user must enter one)."
  type        = string
  default     = ""
}

variable "default_region" {
  description = "Default of the region parameter; must be one of regions.json."
  type        = string
  default     = "us-east-1"
}

variable "agent_auth" {
  description = "How the Coder agent authenticates: aws-instance-identity on EC2, token for the QEMU test build."
  type        = string
  default     = "aws-instance-identity"
  validation {
    condition     = contains(["aws-instance-identity", "token"], var.agent_auth)
    error_message = "agent_auth must be aws-instance-identity or token."
  }
}

variable "docs_url" {
  description = "URL of this template's README (e.g. its page on your Git host); the agent's troubleshooting link points at its #debugging section. Empty: Coder's default troubleshooting link."
  type        = string
  default     = ""
  validation {
    condition     = var.docs_url == "" || can(regex("^https?://[^#\\s]+$", var.docs_url))
    error_message = "docs_url must be empty or an http(s) URL without a #fragment."
  }
}

# The newest NixOS release whose official AMIs are published. How this was
# checked (2026-12-06): NixOS/amis' upload workflow
# (.github/workflows/upload-legacy-ami.yml, snapshot of 2026-06-30) uploads
# release-25.11 and release-26.05 weekly, and third-party pins name
# nixos/26.05.* images; 25.05 left that matrix on 2026-04-16 and its images
# are deregistered 90 days after upload. 26.11 (due 2026-11-30) could not be
# verified from here. 26.05 is supported until 2026-12-31, 25 days after
# this was set: the gate's `nixos-release` row warns from 30 days before a
# release's end of life and fails after it (harness::lint::release). Move
# to 26.11 as soon as
#   aws ec2 describe-images --owners 427812963091 --filters 'Name=name,Values=nixos/26.11.*'
# lists images, and move nixos-vm/ (the nixos tier's image) with it.
variable "nixos_release" {
  description = "NixOS release of the official AMI every workspace boots (resolved at plan time: owner 427812963091, name nixos/<release>.*, newest). YY.05 is supported until 31 December YY, YY.11 until 30 June YY+1."
  type        = string
  default     = "26.05"
}
