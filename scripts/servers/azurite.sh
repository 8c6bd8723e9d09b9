# Azurite (npm `azurite`), the Azure Blob Storage emulator, for the abs backend's tests.
# Installed into $CACHE_DIR/azurite; its `azurite-blob` binary runs directly, so the pid is the
# server's. Telemetry off (it would phone home). Data in memory: nothing outlives the run.
# Exports WALSTREAM_TEST_AZURE_ENDPOINT (http://127.0.0.1:PORT/devstoreaccount1),
# WALSTREAM_TEST_AZURE_ACCOUNT, WALSTREAM_TEST_AZURE_KEY (Azurite's published development key)
# and WALSTREAM_TEST_AZURE_CONTAINER (created here with a SharedKey-signed PUT).
azurite_version=3.35.0 # 3.36+ needs Node.js 21+
azurite_dir="$CACHE_DIR/azurite-$azurite_version"
if [ ! -x "$azurite_dir/node_modules/.bin/azurite-blob" ]; then
  echo "scripts/test.sh: installing azurite@$azurite_version into $azurite_dir" >&2
  npm install --prefix "$azurite_dir" --no-audit --no-fund --loglevel=error "azurite@$azurite_version" >&2
fi
azurite_port="$(free_port)"
server_start azurite "$azurite_dir/node_modules/.bin/azurite-blob" \
  --blobHost 127.0.0.1 --blobPort "$azurite_port" --inMemoryPersistence \
  --extentMemoryLimit 1024 --skipApiVersionCheck --loose --disableTelemetry --silent
wait_port "$azurite_port" 30
export WALSTREAM_TEST_AZURE_ACCOUNT=devstoreaccount1
export WALSTREAM_TEST_AZURE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
export WALSTREAM_TEST_AZURE_ENDPOINT="http://127.0.0.1:$azurite_port/$WALSTREAM_TEST_AZURE_ACCOUNT"
export WALSTREAM_TEST_AZURE_CONTAINER=walstream
# Create Container: PUT <endpoint>/<container>?restype=container, signed with SharedKey.
python3 - <<'PY'
import base64, hashlib, hmac, os, sys, urllib.request
from email.utils import formatdate
acct, key = os.environ["WALSTREAM_TEST_AZURE_ACCOUNT"], os.environ["WALSTREAM_TEST_AZURE_KEY"]
endpoint, container = os.environ["WALSTREAM_TEST_AZURE_ENDPOINT"], os.environ["WALSTREAM_TEST_AZURE_CONTAINER"]
date, version = formatdate(usegmt=True), "2021-08-06"
# VERB, 11 standard headers (Content-Length empty for 0), x-ms-* headers, then the resource.
to_sign = "PUT\n" + "\n" * 11 + f"x-ms-date:{date}\nx-ms-version:{version}\n" \
    f"/{acct}/{acct}/{container}\nrestype:container"
sig = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()).decode()
req = urllib.request.Request(f"{endpoint}/{container}?restype=container", method="PUT", data=None,
    headers={"x-ms-date": date, "x-ms-version": version, "Authorization": f"SharedKey {acct}:{sig}"})
try:
    urllib.request.urlopen(req, timeout=10)
except urllib.error.HTTPError as e:
    if e.code != 409:  # 409: already exists
        sys.exit(f"scripts/servers/azurite.sh: create container: {e.code} {e.read()[:300]!r}")
PY
