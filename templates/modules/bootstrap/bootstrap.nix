# Bootstrap NixOS module for Coder workspaces (the single source: the
# template's user-data ships this file, nixos-vm/ evaluates it in checks).
#
# It makes just enough of a system for the Coder agent to start as the
# workspace's non-root user before the user's own flake is applied:
# the agent user with passwordless sudo, flakes and git for
# `nixos-rebuild switch --flake`, and /home on the persistent home disk.
#
# The user name arrives as the option `coderBootstrap.agentUser`, set from
# a JSON file (never spliced into Nix source), so a hostile value can only
# ever be a string, and the assertion below rejects it.
{ config, lib, pkgs, ... }:
let
  cfg = config.coderBootstrap;
  # root and the users NixOS defines itself (nixpkgs nixos/modules/misc/ids.nix
  # and a default system's system users): the same list as the template's
  # checks (harness::lint::agent_user::RESERVED; `harness lint` compares).
  reservedUsers = [
    # reserved-users:begin
    "root" "messagebus" "haldaemon" "ftp" "nagios" "atd" "postfix" "dovecot" "tomcat"
    "uucp" "pulseaudio" "gpsd" "polkituser" "davfs2" "disnix" "osgi" "tor" "cups"
    "foldingathome" "sabnzbd" "git" "dovecot2" "dovenull2" "mpd" "clamav" "wwwrun" "spamd"
    "nslcd" "scanner" "nginx" "chrony" "smtpd" "smtpq" "supybot" "iodined" "graphite"
    "transmission" "postgres" "smbguest" "varnish" "datadog" "lighttpd" "lightdm"
    "freenet" "ircd" "bacula" "deluge" "mysql" "rabbitmq" "activemq" "gnunet" "oidentd"
    "quassel" "amule" "minidlna" "elasticsearch" "tcpcryptd" "firebird" "munin" "dictd"
    "couchdb" "jenkins" "systemd-journal-gateway" "aerospike" "vault" "murmur"
    "foundationdb" "newrelic" "starbound" "hydra" "spiped" "teamspeak" "influxdb" "nsd"
    "gitolite" "znc" "polipo" "mopidy" "gdm" "siproxd" "mlmmj" "riemann" "riemanndash"
    "yandexdisk" "redmine" "prosody" "i2pd" "systemd-coredump" "systemd-network"
    "systemd-resolve" "systemd-timesync" "liquidsoap" "hbase" "opentsdb" "scollector"
    "bosun" "kubernetes" "peerflix" "gitlab" "cadvisor" "nylon" "exim" "sddm" "zabbix"
    "uptimed" "mediatomb" "ihaskell" "i2p" "lambdabot" "asterisk" "plex" "plexpy"
    "grafana" "skydns" "uwsgi" "riemanntools" "subsonic" "gateone" "namecoin" "xtreemfs"
    "calibre-server" "bepasty" "nm-openvpn" "ejabberd" "postsrsd" "opendkim" "dspam"
    "matrix-synapse" "rspamd" "cfdyndns" "pdnsd" "octoprint" "avahi-autoipd"
    "mjpg-streamer" "hydra-queue-runner" "hydra-www" "syncthing" "caddy" "taskd"
    "sniproxy" "nzbget" "mosquitto" "turnserver" "gocd-agent" "gocd-server" "terraria"
    "mattermost" "prometheus" "telegraf" "gitlab-runner" "postgrey" "leaps" "ipfs"
    "infinoted" "sickbeard" "headphones" "rpc" "fcron" "sonarr" "radarr" "jackett" "aria2"
    "clickhouse" "rslsync" "minio" "kanboard" "kodi" "mighttpd2" "hass" "ceph" "duplicati"
    "monetdb" "restic" "openvpn" "yarn" "hdfs" "mapred" "hadoop" "cfssl" "cassandra"
    "qemu-libvirtd" "lirc" "lidarr" "slurm" "kapacitor" "alerta" "minetest" "rss2email"
    "cockroachdb" "zoneminder" "paperless" "zigbee2mqtt" "hqplayer" "moonraker" "distcc"
    "webdav" "pipewire" "rstudio-server" "localtimed" "automatic-timezoned" "shoko"
    "nixbld" "nobody" "sshd" "nscd" "systemd-oom" "dhcpcd" "ssm-user" "nixbld1" "nixbld2"
    "nixbld3" "nixbld4" "nixbld5" "nixbld6" "nixbld7" "nixbld8" "nixbld9" "nixbld10"
    "nixbld11" "nixbld12" "nixbld13" "nixbld14" "nixbld15" "nixbld16" "nixbld17"
    "nixbld18" "nixbld19" "nixbld20" "nixbld21" "nixbld22" "nixbld23" "nixbld24"
    "nixbld25" "nixbld26" "nixbld27" "nixbld28" "nixbld29" "nixbld30" "nixbld31"
    "nixbld32"
    # reserved-users:end
  ];
in
{
  options.coderBootstrap.agentUser = lib.mkOption {
    type = lib.types.str;
    description = "Workspace user the Coder agent runs as.";
  };

  config = {
    assertions = [
      {
        assertion = builtins.match "[a-z_][a-z0-9_-]{0,31}" cfg.agentUser != null;
        message = "coderBootstrap.agentUser must match ^[a-z_][a-z0-9_-]{0,31}$";
      }
      {
        assertion = !(builtins.elem cfg.agentUser reservedUsers);
        message = "coderBootstrap.agentUser must not be root or a user NixOS defines itself (${cfg.agentUser} is reserved): pick another name.";
      }
    ];

    users.users.${cfg.agentUser} = {
      isNormalUser = true;
      extraGroups = [ "wheel" ];
    };
    security.sudo.wheelNeedsPassword = false;

    nix.settings.experimental-features = [ "nix-command" "flakes" ];
    nix.settings.trusted-users = [ "root" cfg.agentUser ];
    environment.systemPackages = [ pkgs.git pkgs.curl ];

    # The home disk: an EBS volume attached as /dev/xvdb. On Nitro
    # instances (every Graviton type) EBS is NVMe, and /dev/xvdb exists only
    # because amazon-image.nix ships amazon-ec2-utils' udev rules, which
    # name NVMe EBS devices after their block-device mapping.
    # autoResize: raising home_disk_size grows the EBS volume, not ext4;
    # nixpkgs (nixos/modules/tasks/filesystems.nix) turns autoResize into the
    # fstab option x-systemd.growfs, so systemd-growfs grows the file system
    # to the volume each time /home is mounted (the next start).
    fileSystems."/home" = {
      device = "/dev/xvdb";
      fsType = "ext4";
      autoFormat = true;
      autoResize = true;
    };
  };
}
