# Provider-free module: the only place the workspace's user-data and agent
# scripts are produced. Real Terraform renders it offline (harness render,
# terraform test), and the template's instance module consumes user_data.

variable "agent_user" {
  description = "Workspace user the Coder agent runs as."
  type        = string
  validation {
    condition     = can(regex("^[a-z_][a-z0-9_-]{0,31}$", var.agent_user))
    error_message = "agent_user must be a plain Linux user name matching ^[a-z_][a-z0-9_-]{0,31}$."
  }
}

variable "flake_uri" {
  description = "Flake the workspace switches to, e.g. github:me/dotfiles#workspace."
  type        = string
  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9+.-]*:[A-Za-z0-9._~/:@%+=?&#-]+$", var.flake_uri))
    error_message = "flake_uri must be a flake reference such as github:owner/repo#host (no spaces, quotes, $, ;, backticks or parentheses)."
  }
}

variable "agent_auth" {
  description = "aws-instance-identity (EC2) or token (QEMU test build)."
  type        = string
  default     = "aws-instance-identity"
  validation {
    condition     = contains(["aws-instance-identity", "token"], var.agent_auth)
    error_message = "agent_auth must be aws-instance-identity or token."
  }
}

variable "agent_token" {
  description = "Agent token, only used with agent_auth = token."
  type        = string
  default     = ""
  sensitive   = true
}

variable "init_script" {
  description = "The Coder agent init script (coder_agent.init_script)."
  type        = string
}

locals {
  bootstrap_nix = file("${path.module}/bootstrap.nix")

  # configuration.nix lives next to params.json and bootstrap.nix in
  # /etc/coder-bootstrap; the user name is read from JSON, never spliced in.
  configuration_nix = <<-NIX
    # Written by the Coder workspace bootstrap; replaced by your flake.
    { modulesPath, ... }:
    {
      imports = [
        "$${modulesPath}/virtualisation/amazon-image.nix"
        ./bootstrap.nix
      ];
      coderBootstrap.agentUser = (builtins.fromJSON (builtins.readFile ./params.json)).agent_user;
    }
  NIX

  params_json = jsonencode({
    agent_user = var.agent_user
    flake_uri  = var.flake_uri
  })

  agent_env = var.agent_auth == "token" ? "CODER_AGENT_TOKEN=${var.agent_token}\n" : ""

  user_data = templatefile("${path.module}/user-data.sh.tftpl", {
    params_json_b64       = base64encode(local.params_json)
    bootstrap_nix_b64     = base64encode(local.bootstrap_nix)
    configuration_nix_b64 = base64encode(local.configuration_nix)
    agent_env_b64         = base64encode(local.agent_env)
    init_script_b64       = base64encode(var.init_script)
    agent_user_b64        = base64encode(var.agent_user)
  })
}

output "user_data" {
  description = "Script amazon-init runs as root on every boot."
  value       = local.user_data
  # Carries the agent token when agent_auth = "token".
  sensitive = true
}

output "startup_script" {
  description = "coder_agent.startup_script: nixos-rebuild switch --flake \"$FLAKE_URI\"."
  value       = file("${path.module}/startup.sh")
}

output "agent_env" {
  description = "coder_agent.env: parameters for the startup script, as data."
  value = {
    FLAKE_URI = var.flake_uri
  }
}

output "bootstrap_nix" {
  description = "The bootstrap NixOS module."
  value       = local.bootstrap_nix
}
