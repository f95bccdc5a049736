#!/bin/sh
# Install the laptop keys handed in by the test fixture, then run sshd in the foreground.
set -eu
for user in alice bob notmux; do
    if [ -f "/etc/portal-keys/$user.pub" ]; then
        install -m 600 -o "$user" -g "$user" "/etc/portal-keys/$user.pub" "/home/$user/.ssh/authorized_keys"
    fi
done
exec /usr/sbin/sshd -D -e
