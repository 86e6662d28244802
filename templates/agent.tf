# The Coder agent. amazon-init's user-data (bootstrap module) starts it as
# the workspace user; its startup script applies the user's flake.

resource "coder_agent" "main" {
  arch = local.coder_arch
  os   = "linux"
  auth = var.agent_auth

  startup_script          = module.bootstrap.startup_script
  startup_script_behavior = "non-blocking"
  env                     = module.bootstrap.agent_env

  # A first start boots the stock NixOS AMI, evaluates and switches to the
  # bootstrap configuration (nixpkgs evaluation alone takes minutes on a
  # 2-vCPU instance, plus fetching its store paths), and only then starts
  # the agent, which downloads the coder binary: about 5-10 minutes, more
  # on a busy spot host. 1800 s leaves room for a slow first boot before
  # Coder shows the agent as timed out (the provider's default is 120 s).
  connection_timeout = 1800
  # The README's Debugging section (how to reach an instance whose agent
  # never connected); unset without var.docs_url, so Coder shows its own.
  troubleshooting_url = var.docs_url == "" ? null : "${var.docs_url}#debugging"

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

# Instance-identity auth: tell Coder which EC2 instance this agent runs on,
# whatever the module graph between coder_agent and aws_instance becomes.
resource "coder_agent_instance" "main" {
  agent_id    = coder_agent.main.id
  instance_id = module.instance.instance_id
}
