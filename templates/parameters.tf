# Workspace parameters (what a user picks when creating a workspace).

data "coder_parameter" "flake_uri" {
  name         = "flake_uri"
  display_name = "NixOS flake"
  description  = "Flake reference of the workspace's NixOS configuration, e.g. github:me/dotfiles#workspace. Applied with nixos-rebuild switch --flake at every start."
  type         = "string"
  default      = var.default_flake_uri
  mutable      = true
  validation {
    regex = "^[A-Za-z][A-Za-z0-9+.-]*:[A-Za-z0-9._~:/?&=%@+,-]+#[A-Za-z0-9._-]+$"
    error = "Expected a flake reference with a configuration name, like github:owner/repo#host (no spaces, quotes or shell characters)."
  }
}

data "coder_parameter" "agent_user" {
  name         = "agent_user"
  display_name = "User name"
  description  = "Linux user the Coder agent runs as. Your flake must define this user."
  type         = "string"
  default      = var.default_agent_user
  mutable      = false
  validation {
    regex = "^[a-z_][a-z0-9_-]{0,31}$"
    error = "Expected a Linux user name: lower-case letter or _, then up to 31 of a-z 0-9 _ -."
  }
}

data "coder_parameter" "region" {
  name         = "region"
  display_name = "Region"
  type         = "string"
  default      = var.default_region
  mutable      = false
  dynamic "option" {
    for_each = keys(local.amis.regions)
    content {
      name  = option.value
      value = option.value
    }
  }
}

data "coder_parameter" "instance_type" {
  name         = "instance_type"
  display_name = "Instance type"
  type         = "string"
  default      = var.default_instance_type
  mutable      = true
  dynamic "option" {
    for_each = local.arch_types
    content {
      name  = "${option.key} (${option.value.memory_gib} GiB)"
      value = option.key
    }
  }
}

data "coder_parameter" "root_disk_size" {
  name         = "root_disk_size"
  display_name = "Root disk (GiB)"
  type         = "number"
  default      = 40
  mutable      = true
  validation {
    min       = 20
    max       = 1000
    monotonic = "increasing"
  }
}

data "coder_parameter" "home_disk_size" {
  name         = "home_disk_size"
  display_name = "Home disk (GiB)"
  description  = "Persistent /home volume; survives stop/start, deleted with the workspace."
  type         = "number"
  default      = 20
  mutable      = true
  validation {
    min       = 1
    max       = 1000
    monotonic = "increasing"
  }
}

data "coder_parameter" "iam_role_name" {
  name         = "iam_role_name"
  display_name = "IAM role (optional)"
  description  = "Existing IAM role to attach via an instance profile (e.g. to read private flakes from S3/CodeCommit). Empty: none."
  type         = "string"
  default      = ""
  mutable      = true
}

data "coder_parameter" "spot_price" {
  count        = var.is_spot ? 1 : 0
  name         = "spot_price"
  display_name = "Spot max price (USD/hour)"
  description  = "Empty: pay up to the on-demand price."
  type         = "string"
  default      = ""
  mutable      = true
  validation {
    regex = "^([0-9]+(\\.[0-9]+)?)?$"
    error = "Expected a price like 0.05, or empty."
  }
}
