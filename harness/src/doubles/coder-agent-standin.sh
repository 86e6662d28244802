#!/bin/sh
# STAND-IN (harness double) for the Coder agent binary. The harness's Coder
# agent API double serves it as /bin/coder-linux-amd64 and
# /bin/coder-linux-arm64; the init script (real or stand-in) downloads it
# and runs `coder agent`. A pass with it proves the template's boot flow,
# never the real agent.
#
# What it does, as the real agent does (coder/coder agent/agent.go,
# agent/agentscripts/agentscripts.go):
# - authenticates per CODER_AGENT_AUTH: `token` uses CODER_AGENT_TOKEN;
#   `aws-instance-identity` (codersdk/agentsdk/aws.go) gets an IMDSv2 token
#   (PUT /latest/api/token, TTL 21600), the instance-identity `signature`
#   and `document`, and POSTs {signature, document} to
#   /api/v2/workspaceagents/aws-instance-identity for its session token;
#   either token then goes in the header Coder-Session-Token;
# - reports lifecycle `starting`, runs the startup script with the agent's
#   own environment plus `coder_agent.env`, as `<login shell> -c <script>`
#   (the shell from /etc/passwd, as the agent's usershell lookup does),
#   as whatever user systemd started it as;
# - streams the script's output (stdout and stderr) line by line to the
#   logs API while it runs;
# - reports `ready` (exit 0) or `start_error` (non-zero exit) and keeps
#   running, heartbeating (the real agent holds a connection open).
# Double-only endpoints (documented in harness/src/doubles/agent_api.rs):
# GET /harness-double/agent/startup-script and /harness-double/agent/env,
# POST /harness-double/agent/log (text/plain, one line), /hello, and the
# exec queue (GET /harness-double/agent/exec, POST .../exec-result).
# It needs only sh, curl, mktemp, cat and sed on PATH (the real agent is a
# static binary; these are what the init script already needs, plus
# coreutils and sed). HARNESS_IMDS_URL (double-only, for host tests) moves
# the metadata service off 169.254.169.254.
set -u
if [ "${1:-}" != agent ]; then
	echo "coder agent stand-in: usage: coder agent" >&2
	exit 2
fi
url=${CODER_AGENT_URL:?coder agent stand-in: CODER_AGENT_URL is not set}
url=${url%/}
say() { echo "coder agent stand-in: $*" >&2; }
work=$(mktemp -d)

# A JSON string's contents: backslash, quote, tab and newline escaped.
json_escape() {
	sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/	/\\t/g' | sed -e ':a' -e 'N' -e '$!ba' -e 's/\n/\\n/g'
}

# aws-instance-identity: the session token for this instance's signed
# identity document (retried while the metadata service or the server
# cannot be reached or refuses it).
identity_token() {
	imds=${HARNESS_IMDS_URL:-http://169.254.169.254}
	t=$(curl -fsS -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 21600" "$imds/latest/api/token") || return 1
	curl -fsS -H "X-aws-ec2-metadata-token: $t" -o "$work/signature" "$imds/latest/dynamic/instance-identity/signature" || return 1
	curl -fsS -H "X-aws-ec2-metadata-token: $t" -o "$work/document" "$imds/latest/dynamic/instance-identity/document" || return 1
	printf '{"signature":"%s","document":"%s"}' "$(json_escape <"$work/signature")" "$(json_escape <"$work/document")" >"$work/identity.json"
	curl -fsS -X POST -H "Content-Type: application/json" --data-binary @"$work/identity.json" \
		"$url/api/v2/workspaceagents/aws-instance-identity" >"$work/session.json" || return 1
	sed -n 's/.*"session_token" *: *"\([^"]*\)".*/\1/p' "$work/session.json"
}

case "${CODER_AGENT_AUTH:-token}" in
	token) token=${CODER_AGENT_TOKEN:?coder agent stand-in: CODER_AGENT_TOKEN is not set} ;;
	aws-instance-identity)
		until token=$(identity_token) && [ -n "$token" ]; do
			say "aws-instance-identity auth at $url failed; retrying in 3 s"
			sleep 3
		done
		say "authenticated with the instance identity"
		;;
	*)
		say "unsupported CODER_AGENT_AUTH=${CODER_AGENT_AUTH}"
		exit 2
		;;
esac

# api METHOD PATH [BODY] [CONTENT-TYPE]
api() {
	if [ $# -ge 3 ]; then
		printf '%s' "$3" | curl -fsS -X "$1" -H "Coder-Session-Token: $token" \
			-H "Content-Type: ${4:-application/json}" --data-binary @- "$url$2"
	else
		curl -fsS -X "$1" -H "Coder-Session-Token: $token" "$url$2"
	fi
}
lifecycle() { api POST /api/v2/workspaceagents/me/report-lifecycle "{\"state\":\"$1\"}" >/dev/null || say "lifecycle $1 not delivered"; }
send() { api POST /harness-double/agent/log "$1" text/plain >/dev/null || say "log line not delivered"; }

me=${USER:-$(id -un)}
boot=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown)
# Authenticate and fetch the manifest; retry while the server is unreachable.
until api POST /harness-double/agent/hello "user=$me uid=$(id -u) pid=$$ boot=$boot" text/plain >/dev/null; do
	say "cannot reach $url (or the token is refused); retrying in 3 s"
	sleep 3
done
lifecycle starting
api GET /harness-double/agent/startup-script > "$work/script" || { say "no startup script"; lifecycle start_error; }
api GET /harness-double/agent/env > "$work/env" || { say "no agent env"; lifecycle start_error; }

shell=/bin/sh
while IFS=: read -r name _ _ _ _ _ login; do
	if [ "$name" = "$me" ] && [ -n "$login" ]; then shell=$login; fi
done < /etc/passwd
say "running the startup script as $me with $shell"

script=$(cat "$work/script")
(
	unset CODER_AGENT_TOKEN
	# shellcheck disable=SC1091
	. "$work/env"
	"$shell" -c "$script"
	echo "$?" > "$work/status"
) 2>&1 | while IFS= read -r line || [ -n "$line" ]; do
	printf '%s\n' "$line"
	send "$line"
done
status=$(cat "$work/status" 2>/dev/null || echo 255)
if [ "$status" = 0 ]; then
	lifecycle ready
else
	say "startup script exited $status"
	lifecycle start_error
fi
# Stay connected: poll for commands a user runs "through the agent" (the
# double's stand-in for `coder ssh`), run each with the login shell as this
# user, and post the output back. Each poll is also the heartbeat; the
# double holds it open up to 5 s until a command comes (a long poll: one
# curl per command or per 5 s, where a curl and a sleep every second cost
# ~130 ms of a core each second in a TCG guest).
nl='
'
while :; do
	if ! job=$(api GET '/harness-double/agent/exec?wait=5' 2>/dev/null); then
		sleep 1
	elif [ -n "$job" ]; then
		id=${job%%"$nl"*}
		cmd=${job#*"$nl"}
		out=$(
			cd "${HOME:-/}" 2>/dev/null || cd /
			unset CODER_AGENT_TOKEN
			# shellcheck disable=SC1091
			. "$work/env"
			"$shell" -c "$cmd" </dev/null 2>"$work/exec.err"
		)
		rc=$?
		api POST "/harness-double/agent/exec-result?id=$id&status=$rc" "$out" text/plain >/dev/null ||
			say "exec result $id not delivered"
	fi
done
