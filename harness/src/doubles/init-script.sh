#!/usr/bin/env sh
# STAND-IN (harness double) for the Coder agent init script that Coder puts
# in `coder_agent.init_script`. It keeps the contract of coder/coder
# provisionersdk/scripts/bootstrap_linux.sh (written from that contract,
# not copied): `#!/usr/bin/env sh`; needs `mktemp` and `curl` or `wget` (or
# busybox wget) on PATH; downloads `<ACCESS_URL>bin/coder-linux-<ARCH>`
# into a fresh temp dir, retrying while the download fails; makes it
# executable; execs `coder agent` with CODER_AGENT_AUTH and CODER_AGENT_URL
# set, and the token from CODER_AGENT_TOKEN in the environment it was given.
# On a non-zero exit it sleeps to keep the unit's logs, as the real one does.
# The harness substitutes @ACCESS_URL@, @ARCH@ and @AUTH_TYPE@ the way
# Coder's provisioner substitutes ACCESS_URL, ARCH and AUTH_TYPE.
set -eux
waitonexit() {
	echo "=== init script stand-in: the agent script exited with a non-zero code; sleeping to preserve logs..."
	sleep 86400
}
trap waitonexit EXIT
BINARY_DIR=$(mktemp -d -t coder.XXXXXX)
BINARY_NAME=coder
BINARY_URL='@ACCESS_URL@bin/coder-linux-@ARCH@'
cd "$BINARY_DIR"
while :; do
	status=""
	if command -v curl >/dev/null 2>&1; then
		curl -fsSL --compressed "$BINARY_URL" -o "$BINARY_NAME" && break
		status=$?
	elif command -v wget >/dev/null 2>&1; then
		wget -q "$BINARY_URL" -O "$BINARY_NAME" && break
		status=$?
	elif command -v busybox >/dev/null 2>&1; then
		busybox wget -q "$BINARY_URL" -O "$BINARY_NAME" && break
		status=$?
	else
		echo "error: no download tool found, please install curl, wget or busybox wget"
		exit 127
	fi
	echo "error: failed to download coder agent"
	echo "       command returned: $status"
	# The real script waits 30 s; the stand-in retries sooner (test time).
	echo "Trying again in 5 seconds..."
	sleep 5
done
if ! chmod +x "$BINARY_NAME"; then
	echo "Failed to make $BINARY_NAME executable"
	exit 1
fi
export CODER_AGENT_AUTH='@AUTH_TYPE@'
export CODER_AGENT_URL='@ACCESS_URL@'
exec ./"$BINARY_NAME" agent
