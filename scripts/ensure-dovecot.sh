#!/bin/sh
# Install Debian's Dovecot IMAP server for the integration tests, when it is missing.
# Quiet when it is already there; never fails the build by itself: the IMAP tests say
# clearly what is missing (and fail under CI=true).
set -u
if command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ]; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "ensure-dovecot: Dovecot is missing and this user cannot install it (not root); IMAP tests will not run" >&2
        exit 0
    fi
else
    SUDO=""
fi
export DEBIAN_FRONTEND=noninteractive
install() {
    $SUDO apt-get install -y -qq --no-install-recommends dovecot-imapd >/dev/null 2>&1
}
echo "ensure-dovecot: installing dovecot-imapd from Debian's packages …" >&2
if ! install; then
    $SUDO apt-get update -qq >/dev/null 2>&1
    if ! install; then
        echo "ensure-dovecot: could not install dovecot-imapd; IMAP tests will not run" >&2
        exit 0
    fi
fi
# The package starts a system-wide Dovecot where an init system runs; the tests start their own.
echo "ensure-dovecot: installed $(/usr/sbin/dovecot --version 2>/dev/null)" >&2
