# OpenSSH's sshd (Debian `openssh-server`) for the sftp backend's tests: on 127.0.0.1, with a
# generated host key and client key, the current user's login by key only, and the in-process
# `internal-sftp` subsystem, starting in the tests' base directory. Everything lives in a fresh
# $SERVERS_DIR/sshd.XXXXXX (so that concurrent runs don't share keys); those of earlier runs whose
# sshd is gone are removed.
# Exports WALSTREAM_TEST_SFTP_HOST, _PORT, _USER, _KEY (client private key), _HOST_KEY (the
# server's public key, authorized_keys format) and _DIR (a base directory for the tests).
if [ ! -x /usr/sbin/sshd ]; then
  echo "scripts/test.sh: installing openssh-server (apt-get)" >&2
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssh-server >&2; then
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssh-server >&2
  fi
fi
for d in $(find "$SERVERS_DIR" -maxdepth 1 -name 'sshd.*' -type d -mmin +10 2>/dev/null); do
  if [ -f "$d/sshd.pid" ] && kill -0 "$(cat "$d/sshd.pid")" 2>/dev/null; then continue; fi
  rm -rf "$d"
done
sshd_dir="$(mktemp -d "$SERVERS_DIR/sshd.XXXXXX")"
mkdir -p "$sshd_dir/files"
ssh-keygen -q -t ed25519 -N '' -C walstream-test-host -f "$sshd_dir/host_ed25519"
ssh-keygen -q -t ed25519 -N '' -C walstream-test-client -f "$sshd_dir/client_ed25519"
cp "$sshd_dir/client_ed25519.pub" "$sshd_dir/authorized_keys"
# sshd refuses to start without its privilege-separation directory.
mkdir -p /run/sshd
sshd_user="$(id -un)"
sshd_port="$(free_port)"
cat >"$sshd_dir/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port $sshd_port
HostKey $sshd_dir/host_ed25519
PidFile $sshd_dir/sshd.pid
AuthorizedKeysFile $sshd_dir/authorized_keys
AllowUsers $sshd_user
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxStartups 100:30:200
MaxSessions 100
Subsystem sftp internal-sftp -d $sshd_dir/files
CONF
server_start sshd /usr/sbin/sshd -D -e -f "$sshd_dir/sshd_config"
wait_port "$sshd_port" 30
export WALSTREAM_TEST_SFTP_HOST=127.0.0.1
export WALSTREAM_TEST_SFTP_PORT="$sshd_port"
export WALSTREAM_TEST_SFTP_USER="$sshd_user"
export WALSTREAM_TEST_SFTP_KEY="$sshd_dir/client_ed25519"
export WALSTREAM_TEST_SFTP_HOST_KEY="$(cat "$sshd_dir/host_ed25519.pub")"
export WALSTREAM_TEST_SFTP_DIR="$sshd_dir/files"
