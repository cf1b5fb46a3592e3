#!/bin/sh
# Install Debian's Chromium for the browser tests, when it is missing. Playwright for Python
# drives this system browser (tests/support/browser.py); it never downloads browsers.
# Quiet when it is already there; never fails the build by itself: the browser tests say
# clearly what is missing (and fail under CI=true).
set -u
if [ -n "${MAILER_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "ensure-chromium: Chromium is missing and this user cannot install it (not root); browser tests will not run" >&2
        exit 0
    fi
else
    SUDO=""
fi
export DEBIAN_FRONTEND=noninteractive
install() {
    $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null 2>&1
}
echo "ensure-chromium: installing chromium from Debian's packages …" >&2
if ! install; then
    $SUDO apt-get update -qq >/dev/null 2>&1
    if ! install; then
        echo "ensure-chromium: could not install chromium; browser tests will not run" >&2
        exit 0
    fi
fi
echo "ensure-chromium: installed $(chromium --version 2>/dev/null)" >&2
