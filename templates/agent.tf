# The Coder agent. amazon-init's user-data (bootstrap module) starts it as
# the workspace user; its startup script applies the user's flake.

resource "coder_agent" "main" {
  arch = local.coder_arch
  os   = "linux"
  auth = var.agent_auth

  startup_script          = module.bootstrap.startup_script
  startup_script_behavior = "non-blocking"
  env                     = module.bootstrap.agent_env

  metadata {
    display_name = "CPU"
    key          = "cpu"
    script       = "coder stat cpu"
    interval     = 10
    timeout      = 1
  }
  metadata {
    display_name = "Memory"
    key          = "mem"
    script       = "coder stat mem"
    interval     = 10
    timeout      = 1
  }
  metadata {
    display_name = "Home disk"
    key          = "home"
    script       = "coder stat disk --path /home"
    interval     = 60
    timeout      = 1
  }
  metadata {
    display_name = "NixOS generation"
    key          = "generation"
    script       = "readlink /nix/var/nix/profiles/system"
    interval     = 60
    timeout      = 1
  }
}
