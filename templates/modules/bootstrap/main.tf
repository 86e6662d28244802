# Provider-free module: the only place the workspace's user-data and agent
# scripts are produced. Real Terraform renders it offline (harness render,
# terraform test), and the template's instance module consumes user_data.

terraform {
  # variable validations that refer to a local (local.reserved_users).
  required_version = ">= 1.9"
}

variable "agent_user" {
  description = "Workspace user the Coder agent runs as."
  type        = string
  validation {
    condition     = can(regex("^[a-z_][a-z0-9_-]{0,31}$", var.agent_user))
    error_message = "agent_user must be a plain Linux user name matching ^[a-z_][a-z0-9_-]{0,31}$."
  }
  # Not root nor a user NixOS defines itself: local.reserved_users (a
  # validation may name a local since Terraform 1.9). This is where a
  # workspace build refuses those names, with this message (the
  # coder_parameter's regex stays a plain user-name pattern).
  validation {
    condition     = !contains(local.reserved_users, var.agent_user)
    error_message = "agent_user \"${var.agent_user}\" is reserved: root and the users NixOS defines itself (nobody, sshd, messagebus, nixbld1..32, service users of nixos/modules/misc/ids.nix) cannot run the agent; pick another name."
  }
}

variable "flake_uri" {
  description = "Flake the workspace switches to, e.g. github:me/dotfiles#workspace."
  type        = string
  # Empty is valid: Coder imports a template with the parameter's default
  # (empty unless default_flake_uri is set), and the startup script then
  # says what to set and keeps the bootstrap configuration.
  validation {
    condition     = can(regex("^$|^[A-Za-z][A-Za-z0-9+.-]*:[A-Za-z0-9._~/:@%+=?&#-]+$", var.flake_uri))
    error_message = "flake_uri must be empty or a flake reference such as github:owner/repo#host (no spaces, quotes, $, ;, backticks or parentheses)."
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

  # root and the users NixOS defines itself (nixpkgs nixos/modules/misc/ids.nix
  # and a default system's system users): root would run the agent as uid 0,
  # a system user fails NixOS's isNormalUser/isSystemUser assertion. The one
  # list in Terraform: the agent_user validation refuses these names (the
  # user-data does not carry it: 2 KB of EC2's 16 KiB). bootstrap.nix
  # asserts the same list on the machine
  # (harness::lint::agent_user::RESERVED; `harness lint` checks they agree).
  reserved_users = [
    "root", "messagebus", "haldaemon", "ftp", "nagios", "atd", "postfix", "dovecot",
    "tomcat", "uucp", "pulseaudio", "gpsd", "polkituser", "davfs2", "disnix", "osgi",
    "tor", "cups", "foldingathome", "sabnzbd", "git", "dovecot2", "dovenull2", "mpd",
    "clamav", "wwwrun", "spamd", "nslcd", "scanner", "nginx", "chrony", "smtpd", "smtpq",
    "supybot", "iodined", "graphite", "transmission", "postgres", "smbguest", "varnish",
    "datadog", "lighttpd", "lightdm", "freenet", "ircd", "bacula", "deluge", "mysql",
    "rabbitmq", "activemq", "gnunet", "oidentd", "quassel", "amule", "minidlna",
    "elasticsearch", "tcpcryptd", "firebird", "munin", "dictd", "couchdb", "jenkins",
    "systemd-journal-gateway", "aerospike", "vault", "murmur", "foundationdb", "newrelic",
    "starbound", "hydra", "spiped", "teamspeak", "influxdb", "nsd", "gitolite", "znc",
    "polipo", "mopidy", "gdm", "siproxd", "mlmmj", "riemann", "riemanndash", "yandexdisk",
    "redmine", "prosody", "i2pd", "systemd-coredump", "systemd-network", "systemd-resolve",
    "systemd-timesync", "liquidsoap", "hbase", "opentsdb", "scollector", "bosun",
    "kubernetes", "peerflix", "gitlab", "cadvisor", "nylon", "exim", "sddm", "zabbix",
    "uptimed", "mediatomb", "ihaskell", "i2p", "lambdabot", "asterisk", "plex", "plexpy",
    "grafana", "skydns", "uwsgi", "riemanntools", "subsonic", "gateone", "namecoin",
    "xtreemfs", "calibre-server", "bepasty", "nm-openvpn", "ejabberd", "postsrsd",
    "opendkim", "dspam", "matrix-synapse", "rspamd", "cfdyndns", "pdnsd", "octoprint",
    "avahi-autoipd", "mjpg-streamer", "hydra-queue-runner", "hydra-www", "syncthing",
    "caddy", "taskd", "sniproxy", "nzbget", "mosquitto", "turnserver", "gocd-agent",
    "gocd-server", "terraria", "mattermost", "prometheus", "telegraf", "gitlab-runner",
    "postgrey", "leaps", "ipfs", "infinoted", "sickbeard", "headphones", "rpc", "fcron",
    "sonarr", "radarr", "jackett", "aria2", "clickhouse", "rslsync", "minio", "kanboard",
    "kodi", "mighttpd2", "hass", "ceph", "duplicati", "monetdb", "restic", "openvpn",
    "yarn", "hdfs", "mapred", "hadoop", "cfssl", "cassandra", "qemu-libvirtd", "lirc",
    "lidarr", "slurm", "kapacitor", "alerta", "minetest", "rss2email", "cockroachdb",
    "zoneminder", "paperless", "zigbee2mqtt", "hqplayer", "moonraker", "distcc", "webdav",
    "pipewire", "rstudio-server", "localtimed", "automatic-timezoned", "shoko", "nixbld",
    "nobody", "sshd", "nscd", "systemd-oom", "dhcpcd", "ssm-user", "nixbld1", "nixbld2",
    "nixbld3", "nixbld4", "nixbld5", "nixbld6", "nixbld7", "nixbld8", "nixbld9",
    "nixbld10", "nixbld11", "nixbld12", "nixbld13", "nixbld14", "nixbld15", "nixbld16",
    "nixbld17", "nixbld18", "nixbld19", "nixbld20", "nixbld21", "nixbld22", "nixbld23",
    "nixbld24", "nixbld25", "nixbld26", "nixbld27", "nixbld28", "nixbld29", "nixbld30",
    "nixbld31", "nixbld32",
  ]

  # configuration.nix lives next to params.json and bootstrap.nix in
  # /etc/coder-bootstrap; the user name is read from JSON, never spliced in.
  # One file, so the harness's tiers evaluate (nixos-vm) and pin (the
  # contract guest) exactly what the user-data writes.
  configuration_nix = file("${path.module}/configuration.nix")

  params_json = jsonencode({
    agent_user = var.agent_user
    flake_uri  = var.flake_uri
  })

  agent_env = var.agent_auth == "token" ? "CODER_AGENT_TOKEN=${var.agent_token}\n" : ""

  # Every payload gzip-compressed (base64gzip; the script decodes with
  # `base64 -d | gzip -dc`), and the template's own `#` comment lines
  # stripped (the shebang and `##` lines stay): EC2 allows 16,384 bytes of
  # user-data and the worst case must leave 4 KiB of it free (harness lint,
  # user-data-size). agent_user also travels plain base64: the script reads
  # it into a variable.
  user_data = replace(templatefile("${path.module}/user-data.sh.tftpl", {
    params_json       = base64gzip(local.params_json)
    bootstrap_nix     = base64gzip(local.bootstrap_nix)
    configuration_nix = base64gzip(local.configuration_nix)
    agent_env         = base64gzip(local.agent_env)
    init_script       = base64gzip(var.init_script)
    agent_user_b64    = base64encode(var.agent_user)
  }), "/(?m)^[ \\t]*#(?: [^\\n]*)?\\n/", "")
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
