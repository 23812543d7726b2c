#!/bin/sh
# Install Grill Stats Bridge as a systemd service: the system user, the directories,
# the configuration, the MQTT password as a credential, the unit and an admin
# wrapper. Run as root from the source tree, after the virtualenv of README.md step 1.
# Safe to run again: nothing that exists is overwritten.
#
# ROOT: install into this directory instead of / (a staging root; the tests use one).
set -eu

ROOT="${ROOT:-}"
here=$(cd "$(dirname "$0")" && pwd)
app=/opt/grillstats-bridge
etc=/etc/grillstats-bridge
creds=$etc/credentials
state=/var/lib/grillstats-bridge

# The system user (and its group) the service runs as.
if ! grep -q '^grillstats:' "$ROOT/etc/passwd" 2>/dev/null; then
    if [ -n "$ROOT" ]; then prefix="--prefix $ROOT"; else prefix=""; fi
    # shellcheck disable=SC2086
    useradd $prefix --system --user-group --home-dir "$state" --no-create-home \
        --shell /usr/sbin/nologin grillstats
fi
gid=$(awk -F: '$1 == "grillstats" { print $3 }' "$ROOT/etc/group")

# The configuration: no secret in it, readable by all.
install -d -m 0755 "$ROOT$etc"
if [ ! -e "$ROOT$etc/config.yaml" ]; then
    cat > "$ROOT$etc/config.yaml" <<'YAML'
# Grill Stats Bridge (every key: config.example.yaml). Relative paths are in the
# state directory, /var/lib/grillstats-bridge (the database, grillstats.key: back it
# up); secrets are credentials, files in /etc/grillstats-bridge/credentials.
database:
  url: sqlite:///grillstats.db
mqtt:
  host: localhost
  port: 1883
  # username: grillstats          # a broker with a password: the user name here,
  password_file: mqtt-password    # the password in credentials/mqtt-password
YAML
    chmod 0644 "$ROOT$etc/config.yaml"
fi

# Credentials: root and the service's group only. systemd hands them to the service
# (LoadCredential=); the admin wrapper points the bridge at this directory.
install -d -m 0750 -g "$gid" "$ROOT$creds"
if [ ! -e "$ROOT$creds/mqtt-password" ]; then
    install -m 0640 -g "$gid" /dev/null "$ROOT$creds/mqtt-password"  # empty: no password
fi

# The unit (systemd creates the state directory, owned by the user, when it starts).
install -d -m 0755 "$ROOT/etc/systemd/system"
install -m 0644 "$here/grillstats-bridge.service" "$ROOT/etc/systemd/system/"
install -m 0644 "$here/grillstats-bridge@.service" "$ROOT/etc/systemd/system/"

# grillstats-admin: any command as the service user, on the service's files.
install -d -m 0755 "$ROOT/usr/local/sbin"
cat > "$ROOT/usr/local/sbin/grillstats-admin" <<SH
#!/bin/sh
# grillstats-bridge as the service user, on the service's files and credentials
# (ROOT: a staging root, as for install.sh).
cd "\${ROOT:-}$state" || exit 1
exec runuser -u grillstats -- env CREDENTIALS_DIRECTORY="\${ROOT:-}$creds" \\
    "\${ROOT:-}$app/bin/grillstats-bridge" --config "\${ROOT:-}$etc/config.yaml" "\$@"
SH
chmod 0755 "$ROOT/usr/local/sbin/grillstats-admin"
echo "installed: edit $etc/config.yaml (the broker), then: systemctl enable --now grillstats-bridge"
