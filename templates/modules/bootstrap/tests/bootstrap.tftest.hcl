# The rendered user-data and agent scripts, and the injection guard.

variables {
  agent_user  = "alice"
  flake_uri   = "github:example/dotfiles#workspace"
  init_script = "#!/bin/sh\necho agent-init\n"
}

run "renders_a_root_script_that_bootstraps_and_starts_the_agent" {
  command = apply
  assert {
    condition     = startswith(output.user_data, "#!/usr/bin/env bash\n")
    error_message = "amazon-init only runs user-data that starts with #!"
  }
  assert {
    condition     = strcontains(output.user_data, "set -euo pipefail")
    error_message = "the script must stop on the first error"
  }
  assert {
    condition     = strcontains(output.user_data, "nixos-rebuild switch -I \"nixos-config=$conf/configuration.nix\"")
    error_message = "the bootstrap configuration is applied with nixos-rebuild"
  }
  assert {
    condition     = strcontains(output.user_data, "systemd-run --unit=coder-agent")
    error_message = "the agent runs as a transient unit that survives switch-to-configuration"
  }
  assert {
    condition     = strcontains(output.user_data, "--property=Restart=always")
    error_message = "the agent restarts if it dies"
  }
  assert {
    condition     = strcontains(output.user_data, "flake-applied")
    error_message = "re-runs must not clobber an applied flake"
  }
  assert {
    condition     = length(output.user_data) < 16384
    error_message = "EC2 user-data is limited to 16 KiB"
  }
  assert {
    condition     = strcontains(output.startup_script, "nixos-rebuild switch --flake \"$${FLAKE_URI}\"")
    error_message = "the startup script switches to the flake, quoted"
  }
  assert {
    condition     = output.agent_env.FLAKE_URI == var.flake_uri
    error_message = "the flake URI reaches the agent as an environment variable"
  }
  assert {
    condition     = strcontains(output.user_data, base64gzip(jsonencode({ agent_user = "alice", flake_uri = "github:example/dotfiles#workspace" })))
    error_message = "parameters travel as gzip-compressed, base64-encoded JSON"
  }
  assert {
    condition     = strcontains(output.user_data, "unpack '${base64gzip(var.init_script)}' \"$agent_dir/init.sh\"")
    error_message = "the agent init script travels gzip-compressed"
  }
  assert {
    condition     = !strcontains(output.user_data, "nixbld32") && !strcontains(output.user_data, "messagebus")
    error_message = "the reserved-user list stays out of the user-data (the module's validation and bootstrap.nix carry it)"
  }
  assert {
    condition     = length(regexall("(?m)^[ \t]*# ", output.user_data)) == 0 && strcontains(output.user_data, "\n## Coder workspace bootstrap")
    error_message = "the template's # comments are stripped from the user-data; the shebang and ## lines stay"
  }
}

run "user_values_appear_only_base64_encoded" {
  command = apply
  variables {
    agent_user = "zz_canary_user"
    flake_uri  = "github:canary-owner/canary-repo#canaryhost"
  }
  assert {
    condition     = !strcontains(output.user_data, "zz_canary_user")
    error_message = "agent_user must never appear raw in the root script"
  }
  assert {
    condition     = !strcontains(output.user_data, "canary-owner")
    error_message = "flake_uri must never appear raw in the root script"
  }
}

run "token_auth_writes_the_token_to_the_env_file_only" {
  command = apply
  variables {
    agent_auth  = "token"
    agent_token = "tok-canary-123"
  }
  assert {
    condition     = !strcontains(output.user_data, "tok-canary-123")
    error_message = "the token must not appear raw"
  }
  assert {
    condition     = strcontains(output.user_data, base64gzip("CODER_AGENT_TOKEN=tok-canary-123\n"))
    error_message = "the token goes to the agent EnvironmentFile"
  }
}

run "instance_identity_auth_has_no_token" {
  command = apply
  assert {
    condition     = strcontains(output.user_data, "unpack '${base64gzip("")}' \"$state/agent.env\"")
    error_message = "aws-instance-identity needs no token"
  }
}

run "quote_in_agent_user_is_rejected" {
  command = plan
  variables {
    agent_user = "alice'; touch /pwned; '"
  }
  expect_failures = [var.agent_user]
}

run "command_substitution_in_flake_uri_is_rejected" {
  command = plan
  variables {
    flake_uri = "github:me/cfg#$(touch /pwned)"
  }
  expect_failures = [var.flake_uri]
}

run "space_and_semicolon_in_flake_uri_are_rejected" {
  command = plan
  variables {
    flake_uri = "github:me/cfg; reboot"
  }
  expect_failures = [var.flake_uri]
}

run "unknown_auth_is_rejected" {
  command = plan
  variables {
    agent_auth = "password"
  }
  expect_failures = [var.agent_auth]
}

# Coder imports a template with the parameter's default, empty unless a
# values file sets default_flake_uri: the module must accept it (the
# startup script then says what to set).
run "empty_flake_uri_is_accepted" {
  command = apply
  variables {
    flake_uri = ""
  }
  assert {
    condition     = output.agent_env.FLAKE_URI == ""
    error_message = "an empty flake reaches the startup script as an empty FLAKE_URI"
  }
}

run "root_agent_user_is_rejected" {
  command = plan
  variables {
    agent_user = "root"
  }
  expect_failures = [var.agent_user]
}

run "nixos_system_agent_user_is_rejected" {
  command = plan
  variables {
    agent_user = "sshd"
  }
  expect_failures = [var.agent_user]
}

run "nix_build_user_is_rejected" {
  command = plan
  variables {
    agent_user = "nixbld7"
  }
  expect_failures = [var.agent_user]
}

run "nobody_is_rejected" {
  command = plan
  variables {
    agent_user = "nobody"
  }
  expect_failures = [var.agent_user]
}

run "names_near_reserved_ones_are_accepted" {
  command = apply
  variables {
    agent_user = "roots"
  }
  assert {
    condition     = strcontains(output.user_data, base64encode("roots"))
    error_message = "roots is not reserved"
  }
}
