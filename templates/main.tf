# Coder template: a NixOS workspace on AWS EC2 that switches to the user's
# flake. One template per values/*.yml file (see variables.tf).

# Provider versions: Coder runs `terraform init` without -upgrade, so with
# no lock file it installs the newest version these constraints allow.
# They pin the majors the harness tests (hashicorp/aws 5.100.0, coder/coder
# 2.20.0; `harness lint`'s provider-pins row fails on a constraint that
# admits an untested major). 6.x of hashicorp/aws is untested here and
# stores aws_instance.user_data (with the agent token) in clear text.
# To move a major: change the constraint and TESTED in
# harness/src/lint/provider_pins.rs, run the AWS twin and coder-import tiers
# against the new provider, then regenerate the lock where the registry is
# reachable: `bash ci/provider-lock.sh generate` (docs/aws-setup.md).
terraform {
  required_providers {
    coder = {
      source  = "coder/coder"
      version = "~> 2.20"
    }
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }
}

provider "aws" {
  region = data.coder_parameter.region.value
}

data "coder_workspace" "me" {}
data "coder_workspace_owner" "me" {}

locals {
  # Offered regions (the region parameter's options); the AMI itself is
  # looked up at plan time inside the instance module.
  regions        = jsondecode(file("${path.module}/regions.json"))
  instance_types = jsondecode(file("${path.module}/instance-types.json"))
  coder_arch     = var.arch == "aarch64" ? "arm64" : "amd64"
  name           = "coder-${data.coder_workspace_owner.me.name}-${data.coder_workspace.me.name}"
  tags = {
    Coder_Provisioned = "true"
    coder_workspace   = data.coder_workspace.me.name
    coder_owner       = data.coder_workspace_owner.me.name
  }
}

module "bootstrap" {
  source      = "./modules/bootstrap"
  agent_user  = data.coder_parameter.agent_user.value
  flake_uri   = data.coder_parameter.flake_uri.value
  agent_auth  = var.agent_auth
  agent_token = var.agent_auth == "token" ? coder_agent.main.token : ""
  init_script = coder_agent.main.init_script
}

module "market" {
  source     = "./modules/market"
  is_spot    = var.is_spot
  spot_price = var.is_spot ? data.coder_parameter.spot_price[0].value : ""
}

module "instance" {
  source         = "./modules/ec2-instance"
  name           = local.name
  nixos_release  = var.nixos_release
  arch           = var.arch
  instance_type  = data.coder_parameter.instance_type.value
  user_data      = module.bootstrap.user_data
  market_options = module.market.market_options
  root_disk_size = data.coder_parameter.root_disk_size.value
  home_disk_size = data.coder_parameter.home_disk_size.value
  iam_role_name  = data.coder_parameter.iam_role_name.value
  running        = data.coder_workspace.me.transition == "start"
  tags           = local.tags
}

# Coder ignores resource_id and attaches each coder_metadata to the closest
# non-coder resource it depends on in Terraform's graph (coder/coder
# provisioner/terraform/resources.go). So each block references exactly one
# output of module.instance: the instance's items depend on instance_id,
# the volume's on home_volume_id; everything else comes from parameters.
resource "coder_metadata" "instance" {
  resource_id = module.instance.instance_id
  item {
    key   = "region"
    value = data.coder_parameter.region.value
  }
  item {
    key   = "instance type"
    value = data.coder_parameter.instance_type.value
  }
  item {
    key   = "market"
    value = module.market.market
  }
  item {
    key   = "spot max price"
    value = var.is_spot ? (data.coder_parameter.spot_price[0].value == "" ? "on-demand price cap" : "${data.coder_parameter.spot_price[0].value} USD/h") : "n/a"
  }
  item {
    key   = "flake"
    value = data.coder_parameter.flake_uri.value == "" ? "(none set)" : data.coder_parameter.flake_uri.value
  }
}

resource "coder_metadata" "home_volume" {
  resource_id = module.instance.home_volume_id
  item {
    key   = "home volume"
    value = module.instance.home_volume_id
  }
  item {
    key   = "size"
    value = "${data.coder_parameter.home_disk_size.value} GiB"
  }
}
