#!/bin/sh
# Install Debian's SpamAssassin for the deliverability test, when it is missing.
# Quiet when it is already there; never fails the build by itself: the test says clearly
# what is missing (and fails under CI=true). The test runs it with local rules only
# (`spamassassin -L`): no network, no DNS, no Razor or Pyzor.
set -u
if command -v spamassassin >/dev/null 2>&1 || [ -x /usr/bin/spamassassin ]; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "ensure-spamassassin: SpamAssassin is missing and this user cannot install it (not root); the spam score test will not run" >&2
        exit 0
    fi
else
    SUDO=""
fi
export DEBIAN_FRONTEND=noninteractive
install() {
    $SUDO apt-get install -y -qq --no-install-recommends spamassassin >/dev/null 2>&1
}
echo "ensure-spamassassin: installing spamassassin from Debian's packages …" >&2
if ! install; then
    $SUDO apt-get update -qq >/dev/null 2>&1
    if ! install; then
        echo "ensure-spamassassin: could not install spamassassin; the spam score test will not run" >&2
        exit 0
    fi
fi
# The package ships its rules in /usr/share/spamassassin; the test never runs sa-update.
echo "ensure-spamassassin: installed $(spamassassin --version 2>/dev/null | head -n 1)" >&2
