# TEST-ONLY stand-in for templates/modules/ec2-instance in the e2e tier's
# Coder template build: same inputs and outputs, no AWS. It writes the
# rendered user-data and the desired state into a directory shared with the
# harness (bind-mounted into the Coder container), which boots the NixOS
# test image in QEMU with that user-data. Uses only Terraform built-ins.

variable "name" { type = string }
variable "nixos_release" { type = string }
variable "arch" { type = string }
variable "instance_type" { type = string }
variable "user_data" {
  type      = string
  sensitive = true
}
variable "market_options" {
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
  type    = string
  default = ""
}
variable "root_disk_size" { type = number }
variable "home_disk_size" { type = number }
variable "iam_role_name" {
  type    = string
  default = ""
}
variable "running" { type = bool }
variable "tags" {
  type    = map(string)
  default = {}
}
variable "shared_dir" {
  description = "Directory shared with the harness (set when the test build is prepared)."
  type        = string
  default     = "@SHARED_DIR@"
}

locals {
  dir = "${var.shared_dir}/${var.name}"
}

resource "terraform_data" "instance" {
  triggers_replace = [sha256(var.user_data), var.running, var.instance_type]

  provisioner "local-exec" {
    command = "mkdir -p \"$DIR\" && printf '%s' \"$USER_DATA\" > \"$DIR/user-data\" && printf '%s\\n' \"$RUNNING\" > \"$DIR/running\" && printf '%s\\n' \"$INSTANCE_TYPE\" > \"$DIR/instance-type\""
    environment = {
      DIR           = local.dir
      USER_DATA     = var.user_data
      RUNNING       = var.running ? "true" : "false"
      INSTANCE_TYPE = var.instance_type
    }
  }
}

output "instance_id" {
  value = "i-${substr(sha1(var.name), 0, 17)}"
}

output "availability_zone" {
  value = "local"
}

output "home_volume_id" {
  value = "vol-${substr(sha1("${var.name}-home"), 0, 17)}"
}

output "spot_price" {
  value = try(coalesce(var.market_options[0].spot_options.max_price, ""), "")
}
