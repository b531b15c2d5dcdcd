"""The readiness check run inside the Rasa container when the API needs auth.

Rasa's `GET /status` answers 200 only once a model is loaded (409 before), but with
`--auth-token` or `--jwt-secret` it needs a credential, which a static `httpGet` probe
could only carry by writing the secret into the Deployment. This script reads it from the
pod's environment instead. It runs with the Rasa image's own Python (stdlib, plus PyJWT,
which Rasa depends on, for JWT-only auth).
"""

from botenv.render import secretenv as se

PROBE_FILE = "readiness.py"

SCRIPT = f'''\
import json, os, sys, urllib.parse, urllib.request

url = "http://127.0.0.1:%s/status" % os.environ.get("BOTENV_RASA_PORT", "5005")
headers = {{}}
token = os.environ.get("{se.AUTH_TOKEN}")
if token:
    url += "?token=" + urllib.parse.quote(token, safe="")
elif os.environ.get("{se.JWT_SECRET}"):
    import jwt
    claims = {{"user": {{"username": "botenv-readiness", "role": "admin"}}}}
    method = os.environ.get("BOTENV_JWT_METHOD", "HS256")
    headers["Authorization"] = "Bearer " + jwt.encode(claims, os.environ["{se.JWT_SECRET}"],
                                                      algorithm=method)
try:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=4) as r:
        status = json.load(r)
except Exception as exc:  # 409 (no model yet), 401, refused: not ready
    print("not ready: %s" % exc)
    sys.exit(1)
sys.exit(0 if status.get("model_file") or status.get("model_id") else 1)
'''
