# Coder template: a NixOS workspace on AWS EC2 that switches to the user's
# flake. One template per values/*.yml file (see variables.tf).

terraform {
  required_providers {
    coder = {
      source  = "coder/coder"
      version = ">= 2.4"
    }
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

provider "aws" {
  region = data.coder_parameter.region.value
}

data "coder_workspace" "me" {}
data "coder_workspace_owner" "me" {}

locals {
  amis           = jsondecode(file("${path.module}/nixos-amis.json")).regions
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
  ami            = local.amis[data.coder_parameter.region.value][var.arch]
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
