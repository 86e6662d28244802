# The AWS resources of one workspace: the instance, its persistent home
# volume and the optional instance profile. The Coder test build swaps this
# module for a local one, so everything AWS-specific stays in here.

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

variable "ami" {
  description = "NixOS AMI id for the region and arch."
  type        = string
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

resource "aws_iam_instance_profile" "this" {
  count = var.iam_role_name == "" ? 0 : 1
  name  = "${var.name}-profile"
  role  = var.iam_role_name
  tags  = var.tags
}

resource "aws_instance" "this" {
  # checkov:skip=CKV_AWS_135: every type offered (instance-types.json: t3, t4g, m6i, m7g, c6i, c7g) is Nitro and EBS-optimized by default
  # checkov:skip=CKV_AWS_126: detailed (1-minute) monitoring is billed per instance; the agent reports CPU/memory/disk to Coder
  # checkov:skip=CKV2_AWS_41: an instance profile is optional by design (iam_role_name parameter, empty = none)
  ami                  = var.ami
  instance_type        = var.instance_type
  user_data            = var.user_data
  iam_instance_profile = var.iam_role_name == "" ? null : aws_iam_instance_profile.this[0].name

  # The NixOS metadata fetcher asks for an IMDSv2 token; v1 is disabled.
  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required"
  }

  root_block_device {
    volume_type = "gp3"
    volume_size = var.root_disk_size
    encrypted   = true
  }

  dynamic "instance_market_options" {
    for_each = var.market_options
    content {
      market_type = instance_market_options.value.market_type
      spot_options {
        spot_instance_type             = instance_market_options.value.spot_options.spot_instance_type
        instance_interruption_behavior = instance_market_options.value.spot_options.instance_interruption_behavior
        max_price                      = instance_market_options.value.spot_options.max_price
      }
    }
  }

  tags        = merge(var.tags, { Name = var.name })
  volume_tags = var.tags

  lifecycle {
    # A new AMI in the table must not replace a running workspace; the
    # user's flake, not the AMI, defines the system.
    ignore_changes = [ami, user_data]
  }
}

# The home disk lives beside the instance: it survives stop/start (and spot
# interruptions, which stop the instance) and is deleted with the workspace.
# It is created in the instance's availability zone, so the two can attach.
resource "aws_ebs_volume" "home" {
  # checkov:skip=CKV_AWS_189: encrypted with the account's AWS-managed EBS key; a customer-managed KMS key is the account owner's choice, not the template's
  availability_zone = aws_instance.this.availability_zone
  size              = var.home_disk_size
  type              = "gp3"
  encrypted         = true
  tags              = merge(var.tags, { Name = "${var.name}-home" })
}

# Attached as /dev/xvdb. On Nitro instances (every Graviton type) the
# volume appears as NVMe; /dev/xvdb then exists only through the
# amazon-ec2-utils udev rule that NixOS amazon-image.nix ships.
resource "aws_volume_attachment" "home" {
  device_name = "/dev/xvdb"
  volume_id   = aws_ebs_volume.home.id
  instance_id = aws_instance.this.id
}

# Stop handling: stopping the workspace stops the instance; starting it
# again brings back the same instance with the same home volume.
resource "aws_ec2_instance_state" "this" {
  instance_id = aws_instance.this.id
  state       = var.running ? "running" : "stopped"
  depends_on  = [aws_volume_attachment.home]
}

output "instance_id" {
  value = aws_instance.this.id
}

output "availability_zone" {
  value = aws_instance.this.availability_zone
}

output "home_volume_id" {
  value = aws_ebs_volume.home.id
}

output "spot_price" {
  description = "The spot request's max price, or empty for on-demand."
  value       = try(aws_instance.this.instance_market_options[0].spot_options[0].max_price, "")
}
