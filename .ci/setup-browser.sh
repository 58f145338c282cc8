#!/usr/bin/env bash
# Install what the browser tests need: Debian's chromium (browser downloads are not reachable, so never
# `playwright install`). Playwright itself comes from pip with the dev extras. Idempotent: does nothing
# when /usr/bin/chromium exists. Needs root (CI and the dev machines run as root) or sudo.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  echo "setup-browser: chromium present ($(/usr/bin/chromium --version 2>/dev/null || echo 'version unknown'))"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium
echo "setup-browser: installed $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
