# ec2-instance: the AWS resources of one workspace (instance, persistent home
# volume + attachment, optional instance profile). User-data comes from
# module.bootstrap, spot settings from module.market.

variable "name" { type = string }
variable "ami" { type = string }
variable "instance_type" { type = string }
variable "user_data" { type = string }
variable "root_disk_size" { type = number }
variable "home_disk_size" { type = number }
variable "iam_role_name" {
  type    = string
  default = ""
}
variable "market_options" {
  description = "module.market.market_options: [] for on-demand, one object for spot."
  type        = any
  default     = []
}
variable "running" {
  description = "false stops the instance (workspace stop); the home volume survives."
  type        = bool
}
variable "tags" {
  type    = map(string)
  default = {}
}

resource "aws_iam_instance_profile" "this" {
  count = var.iam_role_name == "" ? 0 : 1
  name  = "${var.name}-profile"
  role  = var.iam_role_name
}

resource "aws_instance" "this" {
  ami                  = var.ami
  instance_type        = var.instance_type
  user_data            = var.user_data
  iam_instance_profile = var.iam_role_name == "" ? null : aws_iam_instance_profile.this[0].name

  # Hazard: IMDSv2 only (no unauthenticated metadata reads); amazon-init uses a token.
  metadata_options {
    http_tokens   = "required"
    http_endpoint = "enabled"
  }

  # Hazard: encrypted gp3 root volume.
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

  tags = merge(var.tags, { Name = var.name })

  lifecycle {
    # User-data changes must not replace the instance (and its root disk).
    ignore_changes = [ami, user_data]
  }
}

# Home disk: lives as long as the workspace, survives stop/start, in the
# instance's AZ. Hazard: NVMe naming — on Nitro/Graviton the device shows up as
# /dev/nvme*n1; amazon-image.nix's amazon-ec2-utils udev rule links /dev/xvdb.
resource "aws_ebs_volume" "home" {
  availability_zone = aws_instance.this.availability_zone
  size              = var.home_disk_size
  type              = "gp3"
  encrypted         = true
  tags              = merge(var.tags, { Name = "${var.name}-home" })
}

resource "aws_volume_attachment" "home" {
  device_name = "/dev/xvdb"
  volume_id   = aws_ebs_volume.home.id
  instance_id = aws_instance.this.id
}

resource "aws_ec2_instance_state" "this" {
  instance_id = aws_instance.this.id
  state       = var.running ? "running" : "stopped"
}

output "instance_id" { value = aws_instance.this.id }
output "home_volume_id" { value = aws_ebs_volume.home.id }
output "availability_zone" { value = aws_instance.this.availability_zone }
