# The AWS resources of one workspace: the NixOS AMI lookup, the instance
# (on-demand) or persistent spot request (spot), its persistent home volume
# and the optional instance profile. The Coder test build swaps this module
# for a local one, so everything AWS-specific, the AMI lookup included,
# stays in here.

terraform {
  required_providers {
    aws = {
      source = "hashicorp/aws"
    }
  }
}

variable "name" {
  description = "Name prefix for the workspace's resources."
  type        = string
}

variable "nixos_release" {
  description = "NixOS release whose official AMI is used, e.g. 26.05 (NixOS releases YY.05 and YY.11)."
  type        = string
  validation {
    condition     = can(regex("^[0-9]{2}\\.(05|11)$", var.nixos_release))
    error_message = "nixos_release must be a NixOS release like 26.05 (YY.05 or YY.11)."
  }
}

variable "arch" {
  description = "x86_64 or aarch64 (Graviton)."
  type        = string
  validation {
    condition     = contains(["x86_64", "aarch64"], var.arch)
    error_message = "arch must be x86_64 or aarch64."
  }
}

variable "instance_type" {
  description = "EC2 instance type."
  type        = string
}

variable "user_data" {
  description = "Bootstrap script from the bootstrap module."
  type        = string
  sensitive   = true
}

variable "market_options" {
  description = "From the market module: empty for on-demand, one object for spot."
  type = list(object({
    market_type = string
    spot_options = object({
      spot_instance_type             = string
      instance_interruption_behavior = string
      max_price                      = optional(string)
    })
  }))
}

variable "spot_valid_until" {
  description = "End of a spot workspace's persistent request (RFC 3339). AWS's default is 7 days after creation; once the request has expired the instance can no longer be stopped and started, so it is set far ahead."
  type        = string
  default     = "2099-12-31T23:59:59Z"
}

variable "root_disk_size" {
  description = "Root volume size in GiB."
  type        = number
}

variable "home_disk_size" {
  description = "Home volume size in GiB."
  type        = number
}

variable "iam_role_name" {
  description = "Existing IAM role to attach through an instance profile; empty for none."
  type        = string
  default     = ""
}

variable "running" {
  description = "Desired state: true while the workspace is started, false when stopped."
  type        = bool
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

locals {
  is_spot = length(var.market_options) > 0
  spot    = local.is_spot ? var.market_options[0].spot_options : null
  # Official NixOS AMIs (published by the NixOS project's AWS account) are
  # named nixos/<release>.<revision>-<system>, e.g.
  # nixos/26.05.10057.cf9d2fb3e50f-x86_64-linux; EC2 calls aarch64 arm64.
  nixos_owner   = "427812963091"
  ami_name      = "nixos/${var.nixos_release}.*"
  ami_arch      = var.arch == "aarch64" ? "arm64" : "x86_64"
  instance_tags = merge(var.tags, { Name = var.name })
  root_tags     = merge(var.tags, { Name = "${var.name}-root" })
}

# Resolved at plan time, the way NixOS users do it; the harness's EC2
# backend sends DescribeImages with the same owner and filters
# (harness/src/ec2/ami.rs).
data "aws_ami" "nixos" {
  owners      = [local.nixos_owner]
  most_recent = true

  filter {
    name   = "name"
    values = [local.ami_name]
  }
  filter {
    name   = "architecture"
    values = [local.ami_arch]
  }
  filter {
    name   = "state"
    values = ["available"]
  }
}

resource "aws_iam_instance_profile" "this" {
  count = var.iam_role_name == "" ? 0 : 1
  name  = "${var.name}-profile"
  role  = var.iam_role_name
  tags  = var.tags
}

# On-demand: a plain instance.
resource "aws_instance" "this" {
  # checkov:skip=CKV_AWS_135: every type offered (instance-types.json: t3, t4g, m6i, m7g, c6i, c7g) is Nitro and EBS-optimized by default
  # checkov:skip=CKV_AWS_126: detailed (1-minute) monitoring is billed per instance; the agent reports CPU/memory/disk to Coder
  # checkov:skip=CKV2_AWS_41: an instance profile is optional by design (iam_role_name parameter, empty = none)
  count                = local.is_spot ? 0 : 1
  ami                  = data.aws_ami.nixos.id
  instance_type        = var.instance_type
  user_data            = var.user_data
  iam_instance_profile = var.iam_role_name == "" ? null : aws_iam_instance_profile.this[0].name

  # The NixOS metadata fetcher asks for an IMDSv2 token; v1 is disabled.
  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required"
  }

  # The root volume is tagged here, not through volume_tags: volume_tags
  # would also claim the home volume, whose own tags then fight it on every
  # plan (the provider's aws_instance docs warn of exactly this).
  root_block_device {
    volume_type = "gp3"
    volume_size = var.root_disk_size
    encrypted   = true
    tags        = local.root_tags
  }

  tags = local.instance_tags

  lifecycle {
    # A newer AMI must not replace a running workspace; the user's flake,
    # not the AMI, defines the system.
    ignore_changes = [ami, user_data]
  }
}

# Spot: a persistent request whose interruption stops (not terminates) the
# instance. Unlike a spot aws_instance, destroying this resource cancels
# the request and then terminates the instance (provider:
# internal/service/ec2/ec2_spot_instance_request.go, delete =
# CancelSpotInstanceRequests + terminate), so `coder delete` leaves no
# request behind that would relaunch an untracked instance
# (terraform-provider-aws#38142).
#
# After a real interruption only EC2 can start the instance again, when
# capacity returns in the same zone ("Only Amazon EC2 can restart an
# interrupted stopped Spot Instance", EC2 user guide, interruption
# behavior); a Coder start build meanwhile fails at StartInstances and
# succeeds (nothing to do) once EC2 has restarted it.
resource "aws_spot_instance_request" "this" {
  count                          = local.is_spot ? 1 : 0
  ami                            = data.aws_ami.nixos.id
  instance_type                  = var.instance_type
  user_data                      = var.user_data
  iam_instance_profile           = var.iam_role_name == "" ? null : aws_iam_instance_profile.this[0].name
  spot_type                      = local.spot.spot_instance_type
  instance_interruption_behavior = local.spot.instance_interruption_behavior
  spot_price                     = local.spot.max_price
  valid_until                    = var.spot_valid_until
  wait_for_fulfillment           = true

  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required"
  }

  # RequestSpotInstances cannot tag volumes; the root volume is tagged
  # below (aws_ec2_tag), never through volume_tags.
  root_block_device {
    volume_type = "gp3"
    volume_size = var.root_disk_size
    encrypted   = true
  }

  # These tags land on the request only (provider docs); the instance and
  # its root volume get theirs through aws_ec2_tag.
  tags = local.instance_tags

  lifecycle {
    ignore_changes = [ami, user_data]
  }
}

locals {
  instance_id       = local.is_spot ? aws_spot_instance_request.this[0].spot_instance_id : aws_instance.this[0].id
  availability_zone = local.is_spot ? aws_spot_instance_request.this[0].availability_zone : aws_instance.this[0].availability_zone
}

resource "aws_ec2_tag" "spot_instance" {
  for_each    = local.is_spot ? local.instance_tags : {}
  resource_id = aws_spot_instance_request.this[0].spot_instance_id
  key         = each.key
  value       = each.value
}

resource "aws_ec2_tag" "spot_root" {
  for_each    = local.is_spot ? local.root_tags : {}
  resource_id = aws_spot_instance_request.this[0].root_block_device[0].volume_id
  key         = each.key
  value       = each.value
}

# The home disk lives beside the instance: it survives stop/start (and spot
# interruptions, which stop the instance) and is deleted with the workspace.
# It is created in the instance's availability zone, so the two can attach.
resource "aws_ebs_volume" "home" {
  # checkov:skip=CKV_AWS_189: encrypted with the account's AWS-managed EBS key; a customer-managed KMS key is the account owner's choice, not the template's
  availability_zone = local.availability_zone
  size              = var.home_disk_size
  type              = "gp3"
  encrypted         = true
  tags              = merge(var.tags, { Name = "${var.name}-home" })
}

# Attached as /dev/xvdb. On Nitro instances (every Graviton type) the
# volume appears as NVMe; /dev/xvdb then exists only through the
# amazon-ec2-utils udev rule that NixOS amazon-image.nix ships.
# Detaching a mounted /home from a running instance can hang (DetachVolume
# docs), so the provider stops the instance before it detaches.
resource "aws_volume_attachment" "home" {
  device_name                    = "/dev/xvdb"
  volume_id                      = aws_ebs_volume.home.id
  instance_id                    = local.instance_id
  stop_instance_before_detaching = true
}

# Stop handling: stopping the workspace stops the instance; starting it
# again brings back the same instance with the same home volume.
resource "aws_ec2_instance_state" "this" {
  instance_id = local.instance_id
  state       = var.running ? "running" : "stopped"
  depends_on  = [aws_volume_attachment.home]
}

output "instance_id" {
  value = local.instance_id
}

output "availability_zone" {
  value = local.availability_zone
}

output "home_volume_id" {
  value = aws_ebs_volume.home.id
}

output "spot_price" {
  description = "The spot request's max price, or empty for on-demand."
  value       = local.is_spot ? try(coalesce(local.spot.max_price, ""), "") : ""
}
