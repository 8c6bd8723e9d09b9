# S3 test servers: moto (PyPI `moto[server]`), installed into the shared test venv (cached outside
# the repository). Sourced by scripts/test.sh after lib.sh.
#
# Two servers on 127.0.0.1:
# - moto: the S3 the tests replicate to. It checks no signatures; tests create their own buckets
#   (an unsigned `PUT /<bucket>`). Exports WALSTREAM_TEST_S3_ENDPOINT and test credentials in
#   AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION, which walstream and Litestream read.
# - moto-auth: the same with signature checking on (INITIAL_NO_AUTH_ACTION_COUNT), for the
#   wrong-secret tests. Its IAM user, access key and bucket are made here while auth is still off.
#   Exports WALSTREAM_TEST_S3_AUTH_ENDPOINT, _AUTH_KEY_ID, _AUTH_SECRET and _AUTH_BUCKET.
moto_pkg="moto[server]==5.2.5"
moto_venv="$(py_venv)"
if [ ! -x "$moto_venv/bin/moto_server" ] || ! "$moto_venv/bin/python" -c 'import moto, flask, boto3' 2>/dev/null; then
  echo "scripts/test.sh: installing $moto_pkg into $moto_venv" >&2
  "$moto_venv/bin/pip" install --quiet --disable-pip-version-check "$moto_pkg" >&2
fi

moto_port="$(free_port)"
server_start moto "$moto_venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port"

# The setup below makes exactly this many requests; every later one must be signed.
moto_auth_setup_requests=4
moto_auth_port="$(free_port)"
server_start moto-auth env INITIAL_NO_AUTH_ACTION_COUNT="$moto_auth_setup_requests" \
  "$moto_venv/bin/moto_server" -H 127.0.0.1 -p "$moto_auth_port"

wait_port "$moto_port" 60
wait_port "$moto_auth_port" 60

export WALSTREAM_TEST_S3_ENDPOINT="http://127.0.0.1:$moto_port"
export AWS_ACCESS_KEY_ID=walstream-test
export AWS_SECRET_ACCESS_KEY=walstream-test-secret
export AWS_REGION=us-east-1
export WALSTREAM_TEST_S3_AUTH_ENDPOINT="http://127.0.0.1:$moto_auth_port"
export WALSTREAM_TEST_S3_AUTH_BUCKET=walstream-auth

# IAM user with an allow-all policy, its access key, and the bucket.
moto_auth_env="$("$moto_venv/bin/python" - "$WALSTREAM_TEST_S3_AUTH_ENDPOINT" "$WALSTREAM_TEST_S3_AUTH_BUCKET" <<'PY'
import json, sys
import boto3
endpoint, bucket = sys.argv[1], sys.argv[2]
kw = dict(endpoint_url=endpoint, region_name="us-east-1",
          aws_access_key_id="setup", aws_secret_access_key="setup")
iam = boto3.client("iam", **kw)
iam.create_user(UserName="walstream")
key = iam.create_access_key(UserName="walstream")["AccessKey"]
iam.put_user_policy(UserName="walstream", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
boto3.client("s3", **kw).create_bucket(Bucket=bucket)
print(f"export WALSTREAM_TEST_S3_AUTH_KEY_ID={key['AccessKeyId']}")
print(f"export WALSTREAM_TEST_S3_AUTH_SECRET={key['SecretAccessKey']}")
PY
)" || { echo "scripts/servers/moto.sh: setting up moto-auth failed" >&2; return 1; }
eval "$moto_auth_env"
