# Workspace parameters.

data "coder_parameter" "flake_uri" {
  name         = "flake_uri"
  display_name = "NixOS flake"
  description  = "Flake to switch to, e.g. github:me/dotfiles#workspace. It must define the agent user and mount /home (see README). Empty: the workspace starts on the bootstrap configuration and its startup script asks you to set this."
  type         = "string"
  default      = var.default_flake_uri
  mutable      = true
  # `^$|`: during template import Coder passes no value, and
  # terraform-provider-coder validates the default (empty unless a values
  # file sets default_flake_uri) against this regex (provider/parameter.go).
  validation {
    regex = "^$|^[A-Za-z][A-Za-z0-9+.-]*:[A-Za-z0-9._~/:@%+=?&#-]+$"
    error = "Enter a flake reference like github:owner/repo#host (no spaces, quotes, $, ;, backticks or parentheses), or leave it empty for now."
  }
}

data "coder_parameter" "agent_user" {
  name         = "agent_user"
  display_name = "User name"
  description  = "User the agent runs as; your flake must create it. Fixed at creation: it owns /home/<user> on the persistent home disk and the running system defines it, so a new name needs a new workspace."
  type         = "string"
  default      = var.default_agent_user
  # Immutable: the instance ignores user_data changes (ec2-instance module,
  # ignore_changes), so a new name would never reach a running workspace.
  mutable = false
  # A plain Linux user name. The coder provider prints the whole regex in
  # its error (provider/parameter.go), so it stays this short; root and the
  # users NixOS defines itself are refused by the bootstrap module's
  # validation (local.reserved_users), whose error names the rule.
  validation {
    regex = "^[a-z_][a-z0-9_-]{0,31}$"
    error = "Enter a Linux user name: lowercase letters, digits, _ and -, starting with a letter or _, at most 32 characters (not root or a NixOS system user: see README, User name)."
  }
}

data "coder_parameter" "region" {
  name         = "region"
  display_name = "Region"
  description  = "AWS region. Cannot be changed after the workspace is created."
  type         = "string"
  default      = var.default_region
  mutable      = false
  dynamic "option" {
    for_each = local.regions
    content {
      name  = option.value
      value = option.value
    }
  }
}

data "coder_parameter" "instance_type" {
  name         = "instance_type"
  display_name = "Instance type"
  description  = "Instance size; only types of this template's architecture are offered."
  type         = "string"
  default      = var.default_instance_type
  mutable      = true
  dynamic "option" {
    for_each = local.instance_types[var.arch]
    content {
      name  = "${option.key} (${option.value.memory_gib} GiB)"
      value = option.key
    }
  }
}

data "coder_parameter" "root_disk_size" {
  name         = "root_disk_size"
  display_name = "Root disk (GiB)"
  description  = "Size of the root volume (the Nix store lives here). Can only grow."
  type         = "number"
  default      = 40
  mutable      = true
  validation {
    min       = 16
    max       = 1000
    monotonic = "increasing"
  }
}

data "coder_parameter" "home_disk_size" {
  name         = "home_disk_size"
  display_name = "Home disk (GiB)"
  description  = "Size of the persistent /home volume. Can only grow; the file system grows at the next start (autoResize, see README). AWS allows few resizes of a volume a day."
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
  display_name = "IAM role"
  description  = "Optional existing IAM role for the instance (e.g. to read secrets). Leave empty for none."
  type         = "string"
  default      = ""
  mutable      = true
  validation {
    regex = "^[A-Za-z0-9+=,.@_-]{0,64}$"
    error = "Enter an IAM role name (letters, digits and +=,.@_-) or leave empty."
  }
}

data "coder_parameter" "spot_price" {
  count        = var.is_spot ? 1 : 0
  name         = "spot_price"
  display_name = "Spot max price (USD/h)"
  description  = "Highest hourly price to pay; empty caps it at the on-demand price."
  type         = "string"
  default      = ""
  mutable      = true
  validation {
    regex = "^([0-9]+(\\.[0-9]+)?)?$"
    error = "Enter a price such as 0.05, or leave empty."
  }
}
