# Coder template root module: NixOS workspaces on EC2. Variants differ only in
# the values/*.yml file (arch, is_spot, default_instance_type).

terraform {
  required_providers {
    coder = { source = "coder/coder" }
    aws   = { source = "hashicorp/aws" }
  }
}

provider "aws" {
  region = data.coder_parameter.region.value
}

data "coder_workspace" "me" {}
data "coder_workspace_owner" "me" {}

locals {
  amis           = jsondecode(file("${path.module}/nixos-amis.json"))
  instance_types = jsondecode(file("${path.module}/instance-types.json"))
  # Hazard: instance type vs arch — only types of the variant's arch are offered.
  arch_types = local.instance_types[var.arch]
  name       = "coder-${data.coder_workspace_owner.me.name}-${data.coder_workspace.me.name}"
}

resource "coder_agent" "main" {
  arch           = var.arch == "aarch64" ? "arm64" : "amd64"
  os             = "linux"
  auth           = var.agent_auth
  startup_script = module.bootstrap.startup_script
  env            = module.bootstrap.agent_env
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

module "ec2" {
  source         = "./modules/ec2-instance"
  name           = local.name
  ami            = local.amis.regions[data.coder_parameter.region.value][var.arch]
  instance_type  = data.coder_parameter.instance_type.value
  user_data      = module.bootstrap.user_data
  root_disk_size = data.coder_parameter.root_disk_size.value
  home_disk_size = data.coder_parameter.home_disk_size.value
  iam_role_name  = data.coder_parameter.iam_role_name.value
  market_options = module.market.market_options
  running        = data.coder_workspace.me.transition == "start"
  tags = {
    Coder_Workspace = data.coder_workspace.me.name
    Coder_Owner     = data.coder_workspace_owner.me.name
    Coder_Market    = module.market.market
  }
}

resource "coder_metadata" "instance" {
  resource_id = module.ec2.instance_id
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
    key   = "spot price"
    value = var.is_spot ? (data.coder_parameter.spot_price[0].value == "" ? "on-demand cap" : data.coder_parameter.spot_price[0].value) : "n/a"
  }
  item {
    key   = "flake"
    value = data.coder_parameter.flake_uri.value
  }
}
