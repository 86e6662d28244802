# The AWS resources of one workspace: the NixOS AMI lookup, the zone the
# workspace lives in (chosen once, never moved), the instance (on-demand, or
# spot through instance_market_options), its persistent home volume and the
# optional instance profile. The Coder test build swaps this module for a
# local one, so everything AWS-specific, the AMI lookup included, stays in
# here.
#
# Every attribute read from another resource is one the provider's Read
# sets (hashicorp/terraform-provider-aws 5.100.0, file named beside each
# read; `harness lint` keeps the list: harness/src/lint/provider_reads.rs).

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
  nixos_owner = "427812963091"
  ami_name    = "nixos/${var.nixos_release}.*"
  ami_arch    = var.arch == "aarch64" ? "arm64" : "x86_64"
  # The instance's tags; coder_transition is the workspace's desired state
  # (start/stop), written by every build and read by the guest from IMDS
  # at boot: an instance EC2 starts while Coder shows the workspace stopped
  # (a persistent Spot request restarting it after an interruption) powers
  # itself off before the agent starts (modules/bootstrap; docs/ec2.md, "The template's AWS resources").
  instance_tags = merge(var.tags, { Name = var.name, coder_transition = var.running ? "start" : "stop" })
  request_tags  = merge(var.tags, { Name = var.name })
  root_tags     = merge(var.tags, { Name = "${var.name}-root" })
  home_tags     = merge(var.tags, { Name = "${var.name}-home" })
}

# Resolved at plan time, the way NixOS users do it; the harness's EC2
# backend sends DescribeImages with the same owner and filters
# (harness/src/template/ami.rs).
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

# ---- The zone: chosen once, never moved -------------------------------------
#
# The home volume and the instance must share an availability zone, and the
# home volume must never move (a new zone is a new, empty volume). So the
# zone is decided on the first build and kept in terraform_data.zone
# (ignore_changes: later builds never re-decide it); the instance is placed
# through that zone's default subnet (a subnet is the one placement
# RunInstances always honours) and the volume is created there.
#
# The first build takes the zone of a home volume this workspace already has
# (one created by an earlier template version, found by its tags), else the
# first zone, in name order, that offers the instance type.

data "aws_availability_zones" "available" {
  # checkov:skip=CKV_AWS_394: read on the first build only; the choice is kept in terraform_data.zone (ignore_changes), so a zone AWS adds later never moves a workspace
  state = "available"
}

data "aws_ec2_instance_type_offerings" "type" {
  location_type = "availability-zone"
  filter {
    name   = "instance-type"
    values = [var.instance_type]
  }
}

data "aws_ebs_volumes" "home" {
  tags = local.home_tags
}

data "aws_ebs_volume" "home" {
  count       = length(data.aws_ebs_volumes.home.ids) > 0 ? 1 : 0
  most_recent = true
  filter {
    name   = "volume-id"
    values = data.aws_ebs_volumes.home.ids
  }
}

locals {
  # data.aws_availability_zones: names; data.aws_ec2_instance_type_offerings:
  # locations (internal/service/ec2/ec2_availability_zones_data_source.go,
  # ec2_instance_type_offerings_data_source.go); data.aws_ebs_volume:
  # availability_zone (ebs_volume_data_source.go).
  offered_zones = sort(setintersection(data.aws_availability_zones.available.names, data.aws_ec2_instance_type_offerings.type.locations))
  first_zone    = try(data.aws_ebs_volume.home[0].availability_zone, local.offered_zones[0], "")
}

resource "terraform_data" "zone" {
  input = local.first_zone

  lifecycle {
    ignore_changes = [input]
    precondition {
      condition     = local.first_zone != ""
      error_message = "No availability zone of this region offers instance type ${var.instance_type}: pick another instance type."
    }
  }
}

data "aws_vpc" "default" {
  default = true
}

# The default subnet of the workspace's zone (data.aws_vpc: id,
# ec2_vpc_data_source.go).
data "aws_subnet" "zone" {
  vpc_id            = data.aws_vpc.default.id
  availability_zone = terraform_data.zone.output
  default_for_az    = true
}

resource "aws_iam_instance_profile" "this" {
  count = var.iam_role_name == "" ? 0 : 1
  name  = "${var.name}-profile"
  role  = var.iam_role_name
  tags  = var.tags
}

# ---- The instance ------------------------------------------------------------
#
# One aws_instance for both markets; spot is instance_market_options
# (persistent, interruption behaviour stop). Unlike the legacy
# aws_spot_instance_request, RunInstances with market options sends the
# metadata options (IMDSv2 is enforced on spot too), tags the instance at
# launch, and the provider reads the zone back; destroying it cancels the
# persistent request before terminating the instance (5.100.0, checked by
# the twin tier against the moto double).
#
# What EC2 cannot change in place on a Spot Instance replaces it, keeping
# the home volume (its zone is pinned): the type ("While a Spot Instance is
# stopped, you can modify some of its instance attributes, but not the
# instance type", EC2 user guide, interruption-behavior) through
# terraform_data.spot_launch, and the maximum price (the provider's
# instance_market_options is ForceNew). The root disk is rebuilt then (the
# first boot redoes the bootstrap and the flake's build); /home is kept.
resource "terraform_data" "spot_launch" {
  input = local.is_spot ? var.instance_type : "on-demand"
}

moved {
  from = aws_instance.this[0]
  to   = aws_instance.this
}

resource "aws_instance" "this" {
  # checkov:skip=CKV_AWS_135: every type offered (instance-types.json: t3, t4g, m6i, m7g, c6i, c7g) is Nitro and EBS-optimized by default
  # checkov:skip=CKV_AWS_126: detailed (1-minute) monitoring is billed per instance; the agent reports CPU/memory/disk to Coder
  # checkov:skip=CKV2_AWS_41: an instance profile is optional by design (iam_role_name parameter, empty = none)
  # data.aws_ami: id (ec2_ami_data_source.go); aws_iam_instance_profile:
  # name (iam/instance_profile.go); data.aws_subnet: id
  # (vpc_subnet_data_source.go).
  ami                  = data.aws_ami.nixos.id
  instance_type        = var.instance_type
  user_data            = var.user_data
  iam_instance_profile = var.iam_role_name == "" ? null : aws_iam_instance_profile.this[0].name
  subnet_id            = data.aws_subnet.zone.id

  dynamic "instance_market_options" {
    for_each = var.market_options
    content {
      market_type = instance_market_options.value.market_type
      spot_options {
        # Persistent + stop: an interruption stops the instance (root and
        # home volumes stay) and EC2 restarts it when capacity returns. No
        # valid_until: a persistent request "remains active until you
        # cancel it" (EC2 API reference, SpotMarketOptions).
        spot_instance_type             = instance_market_options.value.spot_options.spot_instance_type
        instance_interruption_behavior = instance_market_options.value.spot_options.instance_interruption_behavior
        max_price                      = instance_market_options.value.spot_options.max_price
      }
    }
  }

  # The NixOS metadata fetcher asks for an IMDSv2 token; v1 is disabled.
  # Instance tags in IMDS: the guest reads coder_transition at boot.
  metadata_options {
    http_endpoint          = "enabled"
    http_tokens            = "required"
    instance_metadata_tags = "enabled"
  }

  # The root volume is tagged here, not through volume_tags: volume_tags
  # would also claim the home volume, whose own tags then fight it on every
  # plan (the provider's aws_instance docs warn of exactly this). The
  # provider tags it right after launch, once the volume has an id.
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
    ignore_changes       = [ami, user_data]
    replace_triggered_by = [terraform_data.spot_launch]
    precondition {
      condition     = contains(data.aws_ec2_instance_type_offerings.type.locations, terraform_data.zone.output)
      error_message = "Instance type ${var.instance_type} is not offered in this workspace's zone ${terraform_data.zone.output}, where its home volume lives: pick another instance type."
    }
  }
}

# RunInstances tags the instance and its volumes, not the Spot request it
# creates for market options: tag the request here. aws_instance:
# spot_instance_request_id (ec2_instance.go, resourceInstanceRead, set when
# DescribeInstances names the request).
resource "aws_ec2_tag" "spot_request" {
  for_each    = local.is_spot ? local.request_tags : {}
  resource_id = aws_instance.this.spot_instance_request_id
  key         = each.key
  value       = each.value

  lifecycle {
    precondition {
      condition     = try(length(aws_instance.this.spot_instance_request_id) > 0, false)
      error_message = "The spot instance has no Spot request id to tag (DescribeInstances named none)."
    }
  }
}

# ---- The home volume ---------------------------------------------------------

# The home disk lives beside the instance: it survives stop/start (and spot
# interruptions, which stop the instance) and is deleted with the workspace.
# terraform_data.zone: output (Terraform's built-in terraform_data).
resource "aws_ebs_volume" "home" {
  # checkov:skip=CKV_AWS_189: encrypted with the account's AWS-managed EBS key; a customer-managed KMS key is the account owner's choice, not the template's
  availability_zone = terraform_data.zone.output
  size              = var.home_disk_size
  type              = "gp3"
  encrypted         = true
  tags              = local.home_tags

  lifecycle {
    # Never move /home: a zone change would be a new, empty volume.
    ignore_changes = [availability_zone]
  }
}

# Attached as /dev/xvdb. On Nitro instances (every Graviton type) the
# volume appears as NVMe; /dev/xvdb then exists only through the
# amazon-ec2-utils udev rule that NixOS amazon-image.nix ships.
# Detaching a mounted /home from a running instance can hang (DetachVolume
# docs), so the provider stops the instance before it detaches.
# aws_ebs_volume: id; aws_instance: id.
resource "aws_volume_attachment" "home" {
  device_name                    = "/dev/xvdb"
  volume_id                      = aws_ebs_volume.home.id
  instance_id                    = aws_instance.this.id
  stop_instance_before_detaching = true
}

# Stop handling: stopping the workspace stops the instance; starting it
# again brings back the same instance with the same home volume. An
# instance AWS has already stopped (a spot interruption) is left as it is;
# the coder_transition tag then keeps it from coming back online by itself.
resource "aws_ec2_instance_state" "this" {
  instance_id = aws_instance.this.id
  state       = var.running ? "running" : "stopped"
  depends_on  = [aws_volume_attachment.home]
}

output "instance_id" {
  value = aws_instance.this.id
}

output "availability_zone" {
  value = terraform_data.zone.output
}

output "home_volume_id" {
  value = aws_ebs_volume.home.id
}

output "spot_price" {
  description = "The spot request's max price, or empty for on-demand."
  value       = local.is_spot ? try(coalesce(local.spot.max_price, ""), "") : ""
}
